import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createClient } from "redis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../../test/redis-server.js";
import { skipWithout } from "../../test/tools.js";
import { IdempotencyKeyConflictError } from "../domain/errors.js";
import { Rooms } from "../domain/rooms.js";
import { createMemoryStore } from "./memory/message-store.js";
import { createMemoryPresence } from "./memory/presence.js";
import type { LiveMessage, MessageDraft, MessageKind, MessageStore } from "./message-store.js";
import { createRedisBackend } from "./redis/backend.js";
import { createSqliteStore } from "./sqlite/message-store.js";

let seq = 0;

/** Resolves once `condition` holds; fails after 5 s. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met within 5 s");
    await new Promise((r) => setTimeout(r, 10));
  }
}
function draft(room: string, content: string, clientMessageId = ""): MessageDraft {
  seq++;
  return {
    id: `id-${seq}`,
    room,
    user: "alice",
    content,
    kind: "chat",
    timestampMs: 1_700_000_000_000 + seq,
    clientMessageId,
  };
}

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-store-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

// A real Redis for the Redis store; each test opens its own database (1–15) so none shares keys.
const noRedis = skipWithout("redis-server");
let redis: RedisServer;
let redisDb = 0;
beforeAll(async () => {
  if (!noRedis) redis = await RedisServer.start();
});
afterAll(async () => {
  await redis?.close();
});

/** Opens a Redis-backed store on `db`; closing it closes the whole backend. */
async function openRedis(db: number): Promise<MessageStore> {
  const backend = await createRedisBackend({
    target: { kind: "redis", url: `redis://127.0.0.1:${redis.port}/${db}` },
    historyMaxLength: 0,
    historyMaxAgeS: 0,
    idempotencyTtlS: 60,
    onError: () => {},
  });
  return { ...backend.store, close: () => backend.close() };
}

// One contract, every implementation (Redis only where redis-server is installed). `open(shared)`
// opens a second handle on the same data where the implementation has one (Redis: another node);
// else undefined.
type Implementation = [
  string,
  () => Promise<MessageStore>,
  (() => Promise<MessageStore>) | undefined,
];
const everyImplementation: Implementation[] = [
  ["memory", async () => createMemoryStore(), undefined],
  ["sqlite", async () => createSqliteStore(tempDir()), undefined],
  [
    "redis",
    async () => {
      redisDb = (redisDb % 15) + 1;
      return openRedis(redisDb);
    },
    async () => openRedis(redisDb),
  ],
];
const implementations = everyImplementation.filter(([name]) => !(noRedis && name === "redis"));

describe.each(implementations)("%s store", (_name, open, openAnotherNode) => {
  it("assigns offsets 1, 2, 3 per room, with no gap even when appends race", async () => {
    const store = await open();
    const results = await Promise.all([
      store.append([draft("a", "1")]),
      store.append([draft("b", "1")]),
      store.append([draft("a", "2"), draft("a", "3")]),
      store.append([draft("b", "2")]),
    ]);
    const offsets = results.flat().map((r) => [r.message.room, r.message.offset]);
    expect(offsets).toEqual([
      ["a", 1],
      ["b", 1],
      ["a", 2],
      ["a", 3],
      ["b", 2],
    ]);
    await store.close();
  });

  it("returns the original message for a repeated client_message_id and stores nothing new", async () => {
    const store = await open();
    const [first] = await store.append([draft("a", "hello", "key-1")]);
    const [again] = await store.append([draft("a", "hello again", "key-1")]);
    const [other] = await store.append([draft("b", "same key, other room", "key-1")]);
    expect(first?.duplicate).toBe(false);
    expect(again?.duplicate).toBe(true);
    expect(again?.message.id).toBe(first?.message.id);
    expect(again?.message.offset).toBe(1);
    expect(again?.message.content).toBe("hello");
    expect(other?.duplicate).toBe(false);
    const page = await store.read({ room: "a", limit: 10 });
    expect(page.messages.map((m) => m.content)).toEqual(["hello"]);
    await store.close();
  });

  it("deduplicates a key repeated inside one batch", async () => {
    const store = await open();
    const results = await store.append([draft("a", "x", "k"), draft("a", "y", "k")]);
    expect(results.map((r) => [r.message.offset, r.duplicate])).toEqual([
      [1, false],
      [1, true],
    ]);
    await store.close();
  });

  it("pages history after, before, and between offsets, oldest first", async () => {
    const store = await open();
    for (let i = 1; i <= 10; i++) await store.append([draft("r", `m${i}`)]);
    const contents = (p: { messages: Array<{ content: string }> }) =>
      p.messages.map((m) => m.content);

    const after = await store.read({ room: "r", afterOffset: 3, limit: 4 });
    expect(contents(after)).toEqual(["m4", "m5", "m6", "m7"]);
    expect(after.hasMore).toBe(true);
    expect(after.lastOffset).toBe(10);

    const tail = await store.read({ room: "r", afterOffset: 7, limit: 4 });
    expect(contents(tail)).toEqual(["m8", "m9", "m10"]);
    expect(tail.hasMore).toBe(false);

    const before = await store.read({ room: "r", beforeOffset: 4, limit: 2 });
    expect(contents(before)).toEqual(["m2", "m3"]);
    expect(before.hasMore).toBe(true);

    const newest = await store.read({ room: "r", limit: 3 });
    expect(contents(newest)).toEqual(["m8", "m9", "m10"]);

    const between = await store.read({ room: "r", afterOffset: 2, beforeOffset: 5, limit: 10 });
    expect(contents(between)).toEqual(["m3", "m4"]);
    expect(between.hasMore).toBe(false);

    const empty = await store.read({ room: "nobody", limit: 10 });
    expect(empty).toEqual({ messages: [], lastOffset: 0, hasMore: false, epoch: "" });
    await store.close();
  });

  it("lists rooms with their counts, last offsets and epochs", async () => {
    const store = await open();
    const [b, a] = await store.append([draft("b", "1"), draft("a", "1"), draft("b", "2")]);
    expect(await store.rooms()).toEqual([
      { name: "a", messageCount: 1, lastOffset: 1, epoch: a?.epoch },
      { name: "b", messageCount: 2, lastOffset: 2, epoch: b?.epoch },
    ]);
    await store.close();
  });

  it("gives each room log an epoch with its first message, and keeps it", async () => {
    const store = await open();
    expect((await store.read({ room: "e", limit: 1 })).epoch).toBe("");
    const [first] = await store.append([draft("e", "1", "key-e")]);
    const epoch = first?.epoch as string;
    expect(epoch).toMatch(/^[A-Za-z0-9_-]{12}$/);
    const later = await store.append([draft("e", "2"), draft("e", "1 again", "key-e")]);
    expect(later.map((r) => r.epoch)).toEqual([epoch, epoch]);
    expect((await store.read({ room: "e", afterOffset: 0, limit: 1 })).epoch).toBe(epoch);
    expect((await store.read({ room: "e", limit: 0 })).epoch).toBe(epoch);
    // Another room's log has its own.
    const [other] = await store.append([draft("f", "1")]);
    expect(other?.epoch).not.toBe(epoch);
    // A JOIN or LEAVE not stored names the room's epoch, "" when the room has no log.
    const [leave] = await store.append([presenceEvent("nothing-here", "bob", "leave")]);
    expect([leave?.duplicate, leave?.epoch]).toEqual([true, ""]);
    await store.close();
  });

  it("does not write an append whose deadline passed first, and rejects with its reason", async () => {
    const store = await open();
    const expired = new AbortController();
    expired.abort(new Error("deadline exceeded"));
    await expect(store.append([draft("d", "late")], expired.signal)).rejects.toThrow(
      "deadline exceeded",
    );
    // Aborted after the call, before the store wrote it (SQLite writes on the next turn).
    const cancelled = new AbortController();
    const pending = store.append([draft("d", "cancelled")], cancelled.signal);
    cancelled.abort(new Error("cancelled"));
    const outcome = await pending.then(
      () => "written",
      (err: Error) => err.message,
    );
    const kept = await store.read({ room: "d", limit: 10 });
    // Either it was written before the abort (Redis and memory may be that fast) and then it is
    // there, or it was not and then it is not: never rejected and written, never lost and acked.
    expect(kept.messages.map((m) => m.content)).toEqual(outcome === "written" ? ["cancelled"] : []);
    await expect(store.read({ room: "d", limit: 10 }, expired.signal)).rejects.toThrow(
      "deadline exceeded",
    );
    await store.close();
  });

  it("feeds a room's appends to its watchers in offset order, with their epoch, until unwatched", async () => {
    const store = await open();
    const seen: LiveMessage[] = [];
    const unwatch = await store.watch("r", { message: (m) => seen.push(m), lost: () => {} });
    const [first] = await store.append([draft("r", "1"), draft("other", "x")]);
    await Promise.all([store.append([draft("r", "2")]), store.append([draft("r", "3")])]);
    await until(() => seen.length === 3);
    expect(seen.map((m) => [m.offset, m.content, m.epoch])).toEqual([
      [1, "1", first?.epoch],
      [2, "2", first?.epoch],
      [3, "3", first?.epoch],
    ]);
    unwatch();
    await store.append([draft("r", "4")]);
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toHaveLength(3);
    await store.close();
  });

  it.runIf(openAnotherNode !== undefined)(
    "gives two nodes appending to one room at once offsets with no gap or duplicate, fed to both",
    async () => {
      const a = await open();
      const b = await (openAnotherNode as () => Promise<MessageStore>)();
      const seenA: number[] = [];
      const seenB: number[] = [];
      await a.watch("r", { message: (m) => seenA.push(m.offset), lost: () => {} });
      await b.watch("r", { message: (m) => seenB.push(m.offset), lost: () => {} });
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? a : b).append([draft("r", `m${i}`)])),
      );
      const offsets = results
        .flat()
        .map((r) => r.message.offset)
        .sort((x, y) => x - y);
      expect(offsets).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
      await until(() => seenA.length === 100 && seenB.length === 100);
      expect(seenA).toEqual(offsets);
      expect(seenB).toEqual(offsets);
      await a.close();
      await b.close();
    },
  );
});

// A reused key is refused by the domain (Rooms.send), comparing with the message the store says
// owns the key; so each store is checked through Rooms, including two handles that race for the
// key (two Redis nodes; two SQLite connections on one file, as the workers of WORKERS=N).
describe.each(implementations)(
  "%s store: a client_message_id reused for another message",
  (name, open, openAnotherNode) => {
    const roomsOn = (store: MessageStore) =>
      new Rooms(store, createMemoryPresence(), {
        maxContentBytes: 4096,
        maxUserBytes: 128,
        subscriberQueueLimit: 16,
      });
    let dir = "";
    const openPair = async (): Promise<[MessageStore, MessageStore]> => {
      if (name === "sqlite") {
        dir = tempDir();
        return [createSqliteStore(dir), createSqliteStore(dir)];
      }
      const first = await open();
      return [first, openAnotherNode === undefined ? first : await openAnotherNode()];
    };
    const closeAll = async (stores: MessageStore[]) => {
      for (const store of new Set(stores)) await store.close();
    };

    it("is refused with the stored message named; the same message is a duplicate", async () => {
      const [store, other] = await openPair();
      const rooms = roomsOn(store);
      const send = (user: string, content: string, key = "k1") =>
        rooms.send({ room: "r", user, content, clientMessageId: key });
      await send("bob", "before", "");
      const first = await send("alice", "hello");
      expect([first.message.offset, first.duplicate]).toEqual([2, false]);
      const retry = await send("alice", "hello");
      expect([retry.message.offset, retry.message.id, retry.duplicate]).toEqual([
        2,
        first.message.id,
        true,
      ]);
      const expected =
        'client_message_id "k1" was already used in room r for a different message (#2 by alice); ' +
        "use a new key for a new message";
      for (const attempt of [send("alice", "hello!"), send("mallory", "hello")]) {
        await expect(attempt).rejects.toThrow(IdempotencyKeyConflictError);
        await expect(attempt).rejects.toThrow(expected);
      }
      // From another node (or connection) too, and nothing more was stored.
      await expect(
        roomsOn(other).send({ room: "r", user: "alice", content: "other", clientMessageId: "k1" }),
      ).rejects.toThrow(expected);
      // The key is per room: in another room it is a new message.
      const elsewhere = await rooms.send({
        room: "r2",
        user: "alice",
        content: "other",
        clientMessageId: "k1",
      });
      expect(elsewhere.duplicate).toBe(false);
      const page = await store.read({ room: "r", limit: 10 });
      expect(page.messages.map((m) => m.content)).toEqual(["before", "hello"]);
      await closeAll([store, other]);
    });

    it("lets exactly one of two racing sends own the key; the other is refused naming it", async () => {
      const [store, other] = await openPair();
      const sends = await Promise.allSettled([
        roomsOn(store).send({ room: "race", user: "alice", content: "a", clientMessageId: "k" }),
        roomsOn(other).send({ room: "race", user: "bob", content: "b", clientMessageId: "k" }),
      ]);
      const won = sends.filter((s) => s.status === "fulfilled");
      const lost = sends.filter((s) => s.status === "rejected");
      expect([won.length, lost.length]).toEqual([1, 1]);
      const winner = (won[0] as PromiseFulfilledResult<{ message: { user: string } }>).value;
      expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(IdempotencyKeyConflictError);
      expect(String((lost[0] as PromiseRejectedResult).reason.message)).toContain(
        `(#1 by ${winner.message.user})`,
      );
      const page = await store.read({ room: "race", limit: 10 });
      expect(page.messages.map((m) => m.user)).toEqual([winner.message.user]);
      await closeAll([store, other]);
    });
  },
);

/** A JOIN or LEAVE of `user` in `room`. */
function presenceEvent(room: string, user: string, kind: MessageKind): MessageDraft {
  return { ...draft(room, `${user} ${kind === "join" ? "joined" : "left"}`), user, kind };
}

describe.each(implementations)("%s store: who has joined", (name, open) => {
  it("stores a JOIN only for a user not joined, and lists the joined users", async () => {
    const store = await open();
    const [first, again, other] = await store.append([
      presenceEvent("j", "alice", "join"),
      presenceEvent("j", "alice", "join"),
      presenceEvent("j", "bob", "join"),
    ]);
    expect([first?.duplicate, again?.duplicate, other?.duplicate]).toEqual([false, true, false]);
    expect(again?.message.offset).toBe(0);
    const joined = await store.joined("j");
    expect(joined.map((m) => m.user).sort()).toEqual(["alice", "bob"]);
    expect(joined.find((m) => m.user === "alice")?.joinedAtMs).toBe(first?.message.timestampMs);
    expect((await store.joined()).length).toBe(2);
    expect(await store.joined("elsewhere")).toEqual([]);
    if (name !== "redis") {
      // (Redis also wants the user away for the grace: redis-backend.test.ts.)
      const [leave, leaveAgain] = await store.append([
        presenceEvent("j", "alice", "leave"),
        presenceEvent("j", "alice", "leave"),
      ]);
      expect([leave?.duplicate, leaveAgain?.duplicate]).toEqual([false, true]);
      expect((await store.joined("j")).map((m) => m.user)).toEqual(["bob"]);
      const [back] = await store.append([presenceEvent("j", "alice", "join")]);
      expect(back?.duplicate).toBe(false);
    }
    await store.close();
  });
});

describe("sqlite store: joined members", () => {
  it("survive a reopen, and are found in a database from before they were recorded", async () => {
    const dir = tempDir();
    const store = createSqliteStore(dir);
    await store.append([
      presenceEvent("m", "alice", "join"),
      presenceEvent("m", "bob", "join"),
      presenceEvent("m", "bob", "leave"),
      presenceEvent("m", "carol", "join"),
    ]);
    await store.close();
    const reopened = createSqliteStore(dir);
    expect((await reopened.joined()).map((m) => m.user).sort()).toEqual(["alice", "carol"]);
    await reopened.close();

    // An older database: no members table; JOINs without LEAVEs (and twice, as a kill -9 and a
    // resume used to write) in its history.
    const db = new Database(join(dir, "switchboard.db"));
    db.exec("DROP TABLE members");
    db.close();
    const older = createSqliteStore(dir);
    expect((await older.joined()).map((m) => m.user).sort()).toEqual(["alice", "carol"]);
    await older.append([presenceEvent("m", "carol", "join")]);
    expect((await older.read({ room: "m", limit: 10 })).messages).toHaveLength(4);
    await older.close();
  });
});

describe("sqlite store: epochs", () => {
  it("keep each room's epoch across a reopen; a database from before epochs gets one per room", async () => {
    const dir = tempDir();
    const store = createSqliteStore(dir);
    const [a, b] = await store.append([draft("a", "1"), draft("b", "1")]);
    await store.close();
    const reopened = createSqliteStore(dir);
    const [a2] = await reopened.append([draft("a", "2")]);
    expect(a2?.epoch).toBe(a?.epoch);
    expect((await reopened.read({ room: "b", limit: 1 })).epoch).toBe(b?.epoch);
    await reopened.close();

    // An older database: its rooms table has no epoch column.
    const db = new Database(join(dir, "switchboard.db"));
    db.exec(`
      CREATE TABLE old_rooms (name TEXT PRIMARY KEY, last_offset INTEGER NOT NULL,
        message_count INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO old_rooms SELECT name, last_offset, message_count FROM rooms;
      DROP TABLE rooms;
      ALTER TABLE old_rooms RENAME TO rooms;
    `);
    db.close();
    const older = createSqliteStore(dir);
    const epochs = (await older.rooms()).map((r) => r.epoch);
    expect(epochs).toHaveLength(2);
    for (const epoch of epochs) expect(epoch).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(new Set([...epochs, a?.epoch, b?.epoch]).size).toBe(4);
    const [a3] = await older.append([draft("a", "3")]);
    expect([a3?.message.offset, a3?.epoch]).toEqual([3, epochs[0]]);
    await older.close();
    const again = createSqliteStore(dir);
    expect((await again.rooms()).map((r) => r.epoch)).toEqual(epochs);
    await again.close();
  });

  it("draws a room's epoch again when the commit that created it failed", async () => {
    const store = createSqliteStore(tempDir());
    const broken = { ...draft("n", "x"), content: null as unknown as string };
    await expect(store.append([draft("n", "rolled back"), broken])).rejects.toThrow(/NOT NULL/);
    expect((await store.read({ room: "n", limit: 1 })).epoch).toBe("");
    const [first] = await store.append([draft("n", "one")]);
    expect((await store.read({ room: "n", limit: 1 })).epoch).toBe(first?.epoch);
    expect(first?.epoch).not.toBe("");
    await store.close();
  });
});

describe("sqlite store durability", () => {
  it("keeps every acknowledged message and continues offsets after reopening", async () => {
    const dir = tempDir();
    const store = createSqliteStore(dir);
    await store.append([draft("r", "one"), draft("r", "two")]);
    await store.close();

    const reopened = createSqliteStore(dir);
    const [third] = await reopened.append([draft("r", "three", "k")]);
    expect(third?.message.offset).toBe(3);
    const page = await reopened.read({ room: "r", limit: 10 });
    expect(page.messages.map((m) => [m.offset, m.content])).toEqual([
      [1, "one"],
      [2, "two"],
      [3, "three"],
    ]);
    const [retry] = await reopened.append([draft("r", "three", "k")]);
    expect(retry?.duplicate).toBe(true);
    await reopened.close();
  });

  it("reuses the offsets of a group commit that failed, so no gap appears", async () => {
    const store = createSqliteStore(tempDir());
    await store.append([draft("r", "one")]);
    // A NOT NULL violation fails the whole transaction, valid message included.
    const broken = { ...draft("r", "x"), content: null as unknown as string };
    await expect(store.append([draft("r", "rolled back"), broken])).rejects.toThrow(/NOT NULL/);
    const [next] = await store.append([draft("r", "two")]);
    expect(next?.message.offset).toBe(2);
    const page = await store.read({ room: "r", limit: 10 });
    expect(page.messages.map((m) => [m.offset, m.content])).toEqual([
      [1, "one"],
      [2, "two"],
    ]);
    await store.close();
  });

  it("refuses appends after close", async () => {
    const store = createSqliteStore(tempDir());
    await store.close();
    await expect(store.append([draft("r", "late")])).rejects.toThrow(/closed/);
  });
});

describe("redis store: epochs", () => {
  /** Two nodes on a fresh database, and a plain client on it (as an operator or a failover). */
  async function setup() {
    redisDb = (redisDb % 15) + 1;
    const db = redisDb;
    const raw = createClient({ url: `redis://127.0.0.1:${redis.port}/${db}` });
    await raw.connect();
    await raw.flushDb();
    const a = await openRedis(db);
    const b = await openRedis(db);
    return {
      a,
      b,
      raw,
      /**
       * What a Redis Cluster failover without the replica wait does to a room: the promoted
       * replica lacks the last messages, so its counter and stream end at `offset`; the epoch
       * key, replicated long before, is the same.
       */
      async rollBack(room: string, offset: number) {
        const log = `sb:{${room}}:log`;
        const kept = await raw.xRange(log, "-", `${offset}-0`);
        await raw.del(log);
        for (const entry of kept) await raw.xAdd(log, entry.id, entry.message);
        await raw.set(`sb:{${room}}:seq`, String(offset));
      },
      async close() {
        await a.close();
        await b.close();
        await raw.close();
      },
    };
  }

  it("survives nothing of FLUSHALL: the next append creates a new log, and a watcher gets it", async () => {
    const { a, raw, close } = await setup();
    const seen: LiveMessage[] = [];
    await a.watch("r", { message: (m) => seen.push(m), lost: () => {} });
    const old = await a.append([draft("r", "1"), draft("r", "2"), draft("r", "3")]);
    const oldEpoch = old[0]?.epoch as string;
    await until(() => seen.length === 3);
    await raw.flushDb();
    expect((await a.read({ room: "r", limit: 10 })).epoch).toBe("");
    const [fresh] = await a.append([draft("r", "new 1")]);
    expect(fresh?.message.offset).toBe(1);
    expect(fresh?.epoch).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(fresh?.epoch).not.toBe(oldEpoch);
    // The feed, still open, hands on the new log's first message (offset 1 again, new epoch)
    // instead of dropping it as a repeat of the old log's offset 1.
    await until(() => seen.length === 4);
    expect([seen[3]?.offset, seen[3]?.epoch]).toEqual([1, fresh?.epoch]);
    await close();
  });

  it("gives a rolled-back log a new epoch when a node that saw further reads or appends", async () => {
    const { a, b, rollBack, close } = await setup();
    const results = await a.append(Array.from({ length: 6 }, (_, i) => draft("r", `m${i + 1}`)));
    const epoch = results[0]?.epoch as string;
    await rollBack("r", 4);
    // Node b never saw past 4: nothing tells it the log went back.
    const unaware = await b.read({ room: "r", afterOffset: 0, limit: 10 });
    expect([unaware.epoch, unaware.lastOffset]).toEqual([epoch, 4]);
    // Node a acknowledged 5 and 6: its read finds the log behind, and renames it.
    const renamed = await a.read({ room: "r", afterOffset: 2, limit: 10 });
    expect(renamed.epoch).not.toBe(epoch);
    expect(renamed.epoch).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(renamed.messages.map((m) => m.content)).toEqual(["m3", "m4"]);
    // Once: b's next append is stored in the new epoch, and a's read does not rename it again.
    const [next] = await b.append([draft("r", "m5 again")]);
    expect([next?.message.offset, next?.epoch]).toEqual([5, renamed.epoch]);
    expect((await a.read({ room: "r", limit: 1 })).epoch).toBe(renamed.epoch);
    await close();
  });

  it("renames the log in the append itself, so no message is stored under the old epoch", async () => {
    const { a, b, rollBack, close } = await setup();
    // Node b only delivered the messages (its feed), as a node with subscribers does.
    const delivered: number[] = [];
    await b.watch("r", { message: (m) => delivered.push(m.offset), lost: () => {} });
    const results = await a.append(Array.from({ length: 6 }, (_, i) => draft("r", `m${i + 1}`)));
    const epoch = results[0]?.epoch as string;
    await until(() => delivered.length === 6);
    await rollBack("r", 3);
    const [reused] = await b.append([draft("r", "m4 again")]);
    expect(reused?.message.offset).toBe(4);
    expect(reused?.epoch).not.toBe(epoch);
    const [after] = await a.append([draft("r", "m5 again")]);
    expect([after?.message.offset, after?.epoch]).toEqual([5, reused?.epoch]);
    await close();
  });

  it("never renames a log that did not go back, however reads and appends of two nodes interleave", async () => {
    const { a, b, close } = await setup();
    const [first] = await a.append([draft("r", "first")]);
    const epochs = new Set<string>();
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const node = i % 2 === 0 ? a : b;
        if (i % 3 === 0) epochs.add((await node.read({ room: "r", limit: 5 })).epoch);
        else epochs.add(((await node.append([draft("r", `m${i}`)]))[0] as { epoch: string }).epoch);
      }),
    );
    expect([...epochs]).toEqual([first?.epoch]);
    await close();
  });
});
