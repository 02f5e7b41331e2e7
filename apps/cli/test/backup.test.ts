// `switchboard backup` while a server takes sends, then `switchboard restore` into a new server:
// the restored history is the original's, message for message, up to the backup's point, with
// each room's epoch, and every send acknowledged before the backup began is in it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Message } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "../../server/test/harness.js";
import { chatClient } from "../../server/test/support.js";
import { runCli } from "./harness.js";

const ROOMS = ["backup-a", "backup-b", "backup-c"];
const NOWHERE = { url: "http://127.0.0.1:9" };

interface Summary {
  file: string;
  messages: number;
  rooms: { name: string; epoch: string; lastOffset: string; messageCount: number }[];
  previous?: string | null;
}

/** Every stored message of `room`, oldest first, read page by page. */
async function wholeHistory(
  url: string,
  room: string,
): Promise<{ messages: Message[]; epoch: string }> {
  const chat = chatClient(url);
  const messages: Message[] = [];
  let after = 0n;
  let epoch = "";
  for (;;) {
    const page = await chat.getHistory({ room, afterOffset: after, limit: 500 });
    epoch = page.epoch;
    messages.push(...page.messages);
    if (!page.hasMore || page.messages.length === 0) return { messages, epoch };
    after = page.messages.at(-1)?.offset ?? after;
  }
}

/** What identifies a stored message, for comparing two servers' histories. */
const shape = (m: Message) => ({
  offset: m.offset,
  id: m.id,
  user: m.user,
  content: m.content,
  type: m.type,
  timestamp: m.timestamp,
});

describe("backup and restore of the SQLite store", () => {
  let source: ServerProcess;
  let target: ServerProcess;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-backup-"));
    [source, target] = await Promise.all([startServer(), startServer()]);
  });
  afterAll(async () => {
    await Promise.all([source?.close(), target?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("backs up under load; the restored server has the same history and epochs up to the backup's point", async () => {
    const chat = chatClient(source.baseUrl);
    /** Each room's highest acknowledged offset, and when it was acknowledged. */
    const acked = new Map<string, { offset: bigint; at: number }[]>(ROOMS.map((r) => [r, []]));
    let sending = true;
    let n = 0;
    const sender = async (lane: number) => {
      while (sending) {
        const room = ROOMS[n++ % ROOMS.length] as string;
        const res = await chat.sendMessage({ room, user: `u${lane}`, content: `m${n}` });
        acked.get(room)?.push({ offset: res.offset, at: performance.now() });
      }
    };
    const senders = [0, 1, 2, 3].map(sender);
    const ackedBefore = async (ms: number) => new Promise((r) => setTimeout(r, ms));
    await ackedBefore(400);

    const backupFile = join(dir, "under-load.db");
    const startedAt = performance.now();
    const backup = await runCli(NOWHERE, [
      "--json",
      "backup",
      backupFile,
      "--data-dir",
      source.dataDir,
    ]);
    const endedAt = performance.now();
    await ackedBefore(200);
    sending = false;
    await Promise.all(senders);
    expect(backup.code, backup.stderr).toBe(0);
    const summary = JSON.parse(backup.stdout) as Summary;

    for (const room of ROOMS) {
      const acks = acked.get(room) ?? [];
      const inBackup = BigInt(summary.rooms.find((r) => r.name === room)?.lastOffset ?? "0");
      const before = acks.filter((a) => a.at < startedAt).map((a) => a.offset);
      const after = acks.filter((a) => a.at > endedAt).map((a) => a.offset);
      // Every send acknowledged before the backup began is in it; sends went on around it.
      expect(before.length).toBeGreaterThan(0);
      expect(after.length).toBeGreaterThan(0);
      expect(Number(inBackup)).toBeGreaterThanOrEqual(Math.max(...before.map(Number)));
      expect(Number(inBackup)).toBeLessThan(Math.max(...after.map(Number)));
    }

    // A running server's database is never replaced.
    const refused = await runCli(NOWHERE, ["restore", backupFile, "--data-dir", target.dataDir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^error: .*switchboard\.db is in use by a running server \(or one of its workers\): stop it, then restore$/m,
    );

    await target.kill("SIGTERM");
    const restore = await runCli(NOWHERE, [
      ...["--json", "restore", backupFile, "--data-dir", target.dataDir],
    ]);
    expect(restore.code, restore.stderr).toBe(0);
    const restored = JSON.parse(restore.stdout) as Summary;
    expect(restored.previous).toMatch(/switchboard\.db\.before-restore-/);
    expect(restored.rooms).toEqual(summary.rooms);
    await target.restart();

    for (const room of ROOMS) {
      const lastOffset = BigInt(summary.rooms.find((r) => r.name === room)?.lastOffset ?? "0");
      const original = await wholeHistory(source.baseUrl, room);
      const copy = await wholeHistory(target.baseUrl, room);
      expect(copy.epoch).toBe(original.epoch);
      expect(copy.messages.map(shape)).toEqual(
        original.messages.filter((m) => m.offset <= lastOffset).map(shape),
      );
      expect(copy.messages.length).toBe(Number(lastOffset));
    }
    // The restored server goes on from the backup's point, in the same log.
    const next = await chatClient(target.baseUrl).sendMessage({
      room: "backup-a",
      user: "after",
      content: "after the restore",
    });
    const a = summary.rooms.find((r) => r.name === "backup-a");
    expect(next.offset).toBe(BigInt(a?.lastOffset ?? "0") + 1n);
    expect(next.epoch).toBe(a?.epoch);
  });

  it("--new-epochs gives every room's log a new epoch; a backup never overwrites; a non-database is refused", async () => {
    const file = join(dir, "quiet.db");
    const first = await runCli(NOWHERE, ["--json", "backup", file, "--data-dir", source.dataDir]);
    expect(first.code, first.stderr).toBe(0);
    const summary = JSON.parse(first.stdout) as Summary;

    const again = await runCli(NOWHERE, ["backup", file, "--data-dir", source.dataDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error: .*quiet\.db exists; a backup never overwrites$/m);

    const missing = await runCli(NOWHERE, ["backup", join(dir, "x.db"), "--data-dir", dir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: no Switchboard database at .*switchboard\.db$/m);

    const notDb = await runCli(NOWHERE, ["restore", join(dir, "nothing.db"), "--data-dir", dir]);
    expect(notDb.code).toBe(1);
    expect(notDb.stderr).toMatch(/^error: no backup at /m);

    await target.kill("SIGTERM");
    const restore = await runCli(NOWHERE, [
      ...["--json", "restore", file, "--data-dir", target.dataDir, "--new-epochs"],
    ]);
    expect(restore.code, restore.stderr).toBe(0);
    const restored = JSON.parse(restore.stdout) as Summary;
    await target.restart();
    for (const room of summary.rooms) {
      const now = restored.rooms.find((r) => r.name === room.name);
      expect(now?.lastOffset).toBe(room.lastOffset);
      expect(now?.epoch).not.toBe(room.epoch);
      const history = await wholeHistory(target.baseUrl, room.name);
      expect(history.epoch).toBe(now?.epoch);
    }
  });
});
