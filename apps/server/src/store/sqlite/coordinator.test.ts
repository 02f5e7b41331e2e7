import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLocalLinks, type PrimaryLink } from "../../cluster-channel.js";
import type { LiveMessage, MessageDraft } from "../message-store.js";
import { SqliteCoordinator } from "./coordinator.js";
import { createSqliteStore, type SqliteStore } from "./message-store.js";
import { createWorkerLimitCounter } from "./worker-limits.js";
import { createWorkerPresence } from "./worker-presence.js";

// The workers of WORKERS=N on SQLite, in one process: several store connections on one database
// file (as each worker opens it), and the primary's coordinator over an in-process channel that
// copies messages through JSON and delivers them on a later turn, as node:cluster's IPC does.

const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-workers-"));
  dirs.push(dir);
  return dir;
}
function open(dir: string, link?: PrimaryLink): SqliteStore {
  const store = createSqliteStore(dir, { link });
  stores.push(store);
  return store;
}

let seq = 0;
const draft = (room: string, content: string, clientMessageId = ""): MessageDraft => ({
  id: `id-${++seq}`,
  room,
  user: "u",
  content,
  kind: "chat",
  timestampMs: Date.now(),
  clientMessageId,
});

/** Every offset of `room`'s history, oldest first. */
async function offsets(store: SqliteStore, room: string): Promise<number[]> {
  const page = await store.read({ room, afterOffset: 0, limit: 10_000 });
  return page.messages.map((m) => m.offset);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** Resolves once `check` holds, or fails after 2 s naming `what`. */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 2000 ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A primary and `n` workers, each with its store connection to one database file. */
function machine(n: number) {
  const dir = tempDir();
  const links = createLocalLinks();
  const primaryStore = open(dir);
  new SqliteCoordinator(links.primary, (room) => primaryStore.joined(room));
  const workers = Array.from({ length: n }, () => {
    const { id, link } = links.connect();
    return { id, link, store: open(dir, link) };
  });
  return { dir, links, workers };
}

describe("one database file, several writers", () => {
  it("gives racing appends from two connections one gapless offset sequence and one epoch", async () => {
    const dir = tempDir();
    const [a, b] = [open(dir), open(dir)] as [SqliteStore, SqliteStore];
    // Each connection commits a group per turn; the rounds interleave them, each connection
    // committing after the other has.
    const appended = [];
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all(
        range(4).map((i) => (i % 2 === 0 ? a : b).append([draft("r", `m${round}.${i}`)])),
      );
      appended.push(...results.flat());
    }
    expect(appended.map((r) => r.message.offset).sort((x, y) => x - y)).toEqual(range(40));
    expect(new Set(appended.map((r) => r.epoch)).size).toBe(1);
    expect(await offsets(a, "r")).toEqual(range(40));
    // Each read answers with the room's newest offset, whoever wrote it.
    const [pageA, pageB] = await Promise.all([
      a.read({ room: "r", limit: 1 }),
      b.read({ room: "r", limit: 1 }),
    ]);
    expect([pageA.lastOffset, pageB.lastOffset]).toEqual([40, 40]);
    expect(a.contention().transactions + b.contention().transactions).toBeGreaterThan(1);
  });

  it("keeps an idempotency key and a presence event once, whichever connection sends it", async () => {
    const dir = tempDir();
    const [a, b] = [open(dir), open(dir)] as [SqliteStore, SqliteStore];
    const [first] = await a.append([draft("r", "once", "key-1")]);
    const [retry] = await b.append([draft("r", "once again", "key-1")]);
    expect(retry?.duplicate).toBe(true);
    expect(retry?.message.id).toBe(first?.message.id);
    const join = (store: SqliteStore) =>
      store.append([{ ...draft("r", "u joined"), kind: "join" }]);
    const [[j1], [j2]] = await Promise.all([join(a), join(b)]);
    expect([j1?.duplicate, j2?.duplicate].sort()).toEqual([false, true]);
    expect(await offsets(b, "r")).toEqual([1, 2]);
  });
});

describe("change feeds across workers", () => {
  it("hands a worker's subscribers every other worker's appends, in offset order, once", async () => {
    const { workers } = machine(3);
    const [a, b, c] = workers.map((w) => w.store) as [SqliteStore, SqliteStore, SqliteStore];
    const seen: number[] = [];
    await c.watch("room", { message: (m) => seen.push(m.offset), lost: () => {} });
    // Both other workers publish, racing, in several group commits each; c publishes too.
    for (let round = 0; round < 5; round++) {
      await Promise.all([
        ...range(6).map((i) => a.append([draft("room", `a${round}.${i}`)])),
        ...range(6).map((i) => b.append([draft("room", `b${round}.${i}`)])),
        c.append([draft("room", `c${round}`)]),
      ]);
    }
    await until(() => seen.length >= 65, `65 messages on c (got ${seen.length})`);
    expect(seen).toEqual(range(65));
  });

  it("reads a message whose wake-up never came: at the next local commit, or when a worker dies", async () => {
    const { dir, links, workers } = machine(3);
    const b = workers[1]?.store as SqliteStore;
    const seen: LiveMessage[] = [];
    await b.watch("room", { message: (m) => seen.push(m), lost: () => {} });
    // A second database connection, as a worker killed between its commit and its notice: the
    // primary never hears of these appends.
    const silent = open(dir);
    await silent.append([draft("room", "lost wake-up 1")]);
    await silent.append([draft("room", "lost wake-up 2")]);
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([]);
    // b's own next commit finds the gap and reads it first.
    await b.append([draft("room", "b's own")]);
    expect(seen.map((m) => [m.offset, m.content])).toEqual([
      [1, "lost wake-up 1"],
      [2, "lost wake-up 2"],
      [3, "b's own"],
    ]);
    // Again without any later commit: when a worker dies, the others read what they follow.
    await silent.append([draft("room", "lost wake-up 3")]);
    links.kill(workers[2]?.id as number);
    await until(() => seen.length === 4, "the message read after a worker died");
    expect(seen.at(-1)?.content).toBe("lost wake-up 3");
    expect(new Set(seen.map((m) => m.epoch)).size).toBe(1);
  });
});

describe("presence across workers", () => {
  it("counts a user once, whichever workers their subscriptions are on", async () => {
    const { workers } = machine(2);
    const [p1, p2] = workers.map((w) =>
      createWorkerPresence(w.link, (room) => w.store.joined(room)),
    ) as [ReturnType<typeof createWorkerPresence>, ReturnType<typeof createWorkerPresence>];
    expect(await p1.join("r", "ann")).toBe(true);
    expect(await p2.join("r", "ann")).toBe(false);
    expect(await p2.join("r", "bob")).toBe(true);
    expect((await p1.members("r")).map((m) => [m.user, m.connections])).toEqual([
      ["ann", 2],
      ["bob", 1],
    ]);
    expect(await p2.subscriptions()).toEqual(new Map([["r", 3]]));
    expect(await p1.leave("r", "ann")).toBe(false);
    expect(await p2.leave("r", "ann")).toBe(true);
    expect((await p1.members("r")).map((m) => m.user)).toEqual(["bob"]);
  });

  it("grants a LEAVE only after the grace since the last subscription ended anywhere, and holds joins meanwhile", async () => {
    const { workers } = machine(2);
    const [p1, p2] = workers.map((w) =>
      createWorkerPresence(w.link, (room) => w.store.joined(room)),
    ) as [ReturnType<typeof createWorkerPresence>, ReturnType<typeof createWorkerPresence>];
    await p1.join("r", "ann");
    await p1.leave("r", "ann");
    // Within the grace: not owed.
    expect(await p2.claimDeparture?.("r", "ann", 60_000)).toBeUndefined();
    // Subscribed again elsewhere: not owed, whatever the grace.
    await p2.join("r", "ann");
    expect(await p1.claimDeparture?.("r", "ann", 0)).toBeUndefined();
    await p2.leave("r", "ann");
    const release = await p1.claimDeparture?.("r", "ann", 0);
    expect(release).toBeTypeOf("function");
    // A second claim, from any worker, is refused while the first holds.
    expect(await p2.claimDeparture?.("r", "ann", 0)).toBeUndefined();
    // A join meanwhile waits for the LEAVE to be stored, then counts as the user's first.
    let joined: boolean | undefined;
    const join = p2.join("r", "ann").then((first) => {
      joined = first;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(joined).toBeUndefined();
    release?.();
    await join;
    expect(joined).toBe(true);
  });

  it("makes a dead worker's members away from its death: LEAVE owed after the grace", async () => {
    const { links, workers } = machine(2);
    const [w1, w2] = workers as [(typeof workers)[0], (typeof workers)[0]];
    const p1 = createWorkerPresence(w1.link, (room) => w1.store.joined(room));
    const p2 = createWorkerPresence(w2.link, (room) => w2.store.joined(room));
    // ann is joined in the history and subscribed on w1 only; bob on both.
    for (const user of ["ann", "bob"]) {
      await w1.store.append([{ ...draft("r", `${user} joined`), user, kind: "join" }]);
      await p1.join("r", user);
    }
    await p2.join("r", "bob");
    expect(await p2.due(0)).toEqual([]);
    links.kill(w1.id);
    await new Promise((r) => setTimeout(r, 10));
    const members = await p2.members("r");
    expect(members.map((m) => [m.user, m.connections])).toEqual([
      ["ann", 0],
      ["bob", 1],
    ]);
    expect(await p2.due(60_000)).toEqual([]);
    expect(await p2.due(0)).toEqual([{ room: "r", user: "ann" }]);
  });
});

describe("limits across workers", () => {
  it("shares one token bucket and one stream count per identity; a dead worker's slots come back", async () => {
    const { links, workers } = machine(2);
    const [c1, c2] = workers.map((w) => createWorkerLimitCounter(w.link)) as [
      ReturnType<typeof createWorkerLimitCounter>,
      ReturnType<typeof createWorkerLimitCounter>,
    ];
    // A burst of 4, refilled at 1/s: four takes through either worker, then a wait.
    const takes = await Promise.all(
      range(6).map((i) => (i % 2 === 0 ? c1 : c2).takePublishToken("ip", 1, 4)),
    );
    expect(takes.filter((w) => w === 0)).toHaveLength(4);
    expect(takes.filter((w) => w > 0)).toHaveLength(2);
    const a = await c1.acquireStream("ip", 2);
    const b = await c1.acquireStream("ip", 2);
    expect(await c2.acquireStream("ip", 2)).toBeUndefined();
    a?.release();
    await new Promise((r) => setTimeout(r, 10));
    expect(await c2.acquireStream("ip", 2)).toBeDefined();
    expect(b).toBeDefined();
    expect(await c2.acquireStream("ip", 2)).toBeUndefined();
    links.kill(workers[0]?.id as number);
    await new Promise((r) => setTimeout(r, 10));
    expect(await c2.acquireStream("ip", 2)).toBeDefined();
  });
});
