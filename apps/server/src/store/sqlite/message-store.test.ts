import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { MessageDraft } from "../message-store.js";
import { createSqliteStore } from "./message-store.js";

// Durability rests on settings that no crash test can see: WAL survives `kill -9` whatever
// `synchronous` says, and only power loss tells FULL from OFF. So the settings themselves are
// asserted, on the store's own connection (`synchronous` and `busy_timeout` are per connection),
// with the values written out here rather than read from the code under test.

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-sqlite-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("the SQLite store's settings", () => {
  it("runs with journal_mode=wal, synchronous=FULL (2) and busy_timeout=5000, new or reopened", async () => {
    const dir = tempDir();
    for (const round of ["new", "reopened"]) {
      const store = createSqliteStore(dir);
      expect(store.pragma("journal_mode"), round).toBe("wal");
      expect(store.pragma("synchronous"), round).toBe(2);
      expect(store.pragma("busy_timeout"), round).toBe(5000);
      // Checkpoints stay on, so the WAL does not grow without bound.
      expect(store.pragma("wal_autocheckpoint"), round).toBeGreaterThan(0);
      await store.append([
        {
          id: `id-${round}`,
          room: "r",
          user: "u",
          content: round,
          kind: "chat",
          timestampMs: Date.now(),
          clientMessageId: "",
        },
      ]);
      await store.close();
    }
  });

  it("leaves the database file in WAL mode, as another connection sees it", async () => {
    const dir = tempDir();
    await createSqliteStore(dir).close();
    const other = new Database(join(dir, "switchboard.db"), { readonly: true });
    try {
      expect(other.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      other.close();
    }
  });

  it("refuses a pragma name that is not one", () => {
    const store = createSqliteStore(tempDir());
    expect(() => store.pragma("synchronous = OFF")).toThrow(/not a pragma name/);
    expect(store.pragma("synchronous")).toBe(2);
    void store.close();
  });
});

describe("the SQLite store's idempotency key", () => {
  let seq = 0;
  const draft = (room: string, content: string, clientMessageId: string): MessageDraft => ({
    id: `id-${++seq}`,
    room,
    user: "u",
    content,
    kind: "chat",
    timestampMs: Date.now(),
    clientMessageId,
  });
  /** What a retry reads back: room, offset, content and id of the message the key names. */
  const seen = (r: { message: { room: string; offset: number; content: string; id: string } }) =>
    [r.message.room, r.message.offset, r.message.content, r.message.id].join(" ");

  it("is per room: the same key in two rooms, in one group commit and after a reopen", async () => {
    const dir = tempDir();
    const store = createSqliteStore(dir);
    // One group commit (both appends in one turn): the key in room a, then in room b.
    const [[a], [b]] = await Promise.all([
      store.append([draft("a", "in a", "k")]),
      store.append([draft("b", "in b", "k")]),
    ]);
    expect([a?.duplicate, b?.duplicate]).toEqual([false, false]);
    expect([a?.message.offset, b?.message.offset]).toEqual([1, 1]);
    // Each room's retry finds its own room's message.
    const [retryB] = await store.append([draft("b", "retry in b", "k")]);
    const [retryA] = await store.append([draft("a", "retry in a", "k")]);
    expect(retryB?.duplicate).toBe(true);
    expect(seen(retryB as NonNullable<typeof retryB>)).toBe(seen(b as NonNullable<typeof b>));
    expect(retryA?.duplicate).toBe(true);
    expect(seen(retryA as NonNullable<typeof retryA>)).toBe(seen(a as NonNullable<typeof a>));
    await store.close();

    // Reopened (a restart): the keys are read from the database, still per room.
    const reopened = createSqliteStore(dir);
    const [again] = await reopened.append([draft("b", "after the restart", "k")]);
    expect(again?.duplicate).toBe(true);
    expect(seen(again as NonNullable<typeof again>)).toBe(seen(b as NonNullable<typeof b>));
    const [c] = await reopened.append([draft("c", "in c", "k")]);
    expect([c?.duplicate, c?.message.offset, c?.message.room]).toEqual([false, 1, "c"]);
    for (const room of ["a", "b", "c"]) {
      const page = await reopened.read({ room, limit: 10 });
      expect(
        page.messages.map((m) => m.content),
        room,
      ).toEqual([`in ${room}`]);
    }
    await reopened.close();
  });
});
