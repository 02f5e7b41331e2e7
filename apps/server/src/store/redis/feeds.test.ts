// The room feed on a real Redis, driven by hand: messages written to the room's stream and
// announced on its channel in the order a test chooses, as nodes that publish after a replica
// wait may announce them (out of order, some never), and as the append script does (in order).
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../../../test/redis-server.js";
import type { LiveMessage } from "../message-store.js";
import { connectRedis, type RedisConnection } from "./connection.js";
import { GAP_HOLD_MS, type ReadLog, RedisFeeds } from "./feeds.js";
import { epochBaseKey, epochKey, feedChannel, logKey, seqKey } from "./keys.js";
import { decode, readLog } from "./message-store.js";
import { loadScripts, scriptRunner } from "./scripts.js";

let redis: RedisServer;
let connection: RedisConnection;
let raw: ReturnType<typeof createClient>;
/** The ordered feed's history reader. */
let history: ReadLog;

beforeAll(async () => {
  redis = await RedisServer.start();
  connection = await connectRedis({ kind: "redis", url: redis.url }, () => {});
  raw = createClient({ url: redis.url });
  await raw.connect();
  const run = scriptRunner(connection, loadScripts());
  history = (room, range, count) => readLog(run, room, range, count);
});
afterAll(async () => {
  await raw?.close();
  await connection?.close();
  await redis?.close();
});

let rooms = 0;
const newRoom = () => `feed-${++rooms}`;

/**
 * Stores the room's next message as the append script does; returns its JSON as announced (with
 * the room's epoch when it has one).
 */
async function store(room: string): Promise<string> {
  const offset = await raw.incr(seqKey(room));
  const epoch = await raw.get(epochKey(room));
  const json = JSON.stringify({
    o: offset,
    id: `id-${room}-${offset}`,
    r: room,
    u: "u",
    c: `m${offset}`,
    t: 1,
    ts: String(Date.now()),
    k: "",
  });
  await raw.xAdd(logKey(room), `${offset}-0`, { m: json });
  return epoch === null ? json : `${json.slice(0, -1)},"e":"${epoch}"}`;
}

/** Gives the room's log a new epoch from its next message on, as the append script does. */
async function reset(room: string, epoch: string, base: number): Promise<void> {
  await raw.set(seqKey(room), String(base));
  await raw.set(epochKey(room), epoch);
  await raw.set(epochBaseKey(room), String(base));
}

const announce = (room: string, json: string) => raw.sPublish(feedChannel(room), json);

async function watch(feeds: RedisFeeds, room: string) {
  const seen: LiveMessage[] = [];
  const lost: string[] = [];
  const stop = await feeds.watch(room, {
    message: (m) => seen.push(m),
    lost: (err) => lost.push(err.message),
  });
  return { seen, lost, stop, offsets: () => seen.map((m) => m.offset) };
}

async function until(condition: () => boolean, what: string, ms = 5_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("an ordered feed (announced after a replica wait)", () => {
  it("delivers announcements that arrive out of order in offset order, each once, from the room's last offset at the watch on", async () => {
    const feeds = new RedisFeeds(connection, decode, () => {}, history);
    const room = newRoom();
    // Stored before the watch (offset 1): not owed to it, even when announced after.
    const before = await store(room);
    const feed = await watch(feeds, room);
    const [m2, m3, m4] = [await store(room), await store(room), await store(room)];
    await announce(room, before);
    await announce(room, m3 as string);
    await announce(room, m4 as string);
    await announce(room, m2 as string);
    await until(() => feed.seen.length === 3, "offsets 2-4");
    // Late and repeated announcements (a retried send's) are not delivered again.
    await announce(room, m3 as string);
    await announce(room, m2 as string);
    await sleep(GAP_HOLD_MS * 2);
    expect(feed.offsets()).toEqual([2, 3, 4]);
    expect(feed.lost).toEqual([]);
    feed.stop();
    await feeds.close();
  });

  it("reads a gap that is not announced (a failed wait) from history", async () => {
    const feeds = new RedisFeeds(connection, decode, () => {}, history);
    const room = newRoom();
    const feed = await watch(feeds, room);
    await store(room); // offset 1: its wait failed, never announced
    await store(room); // offset 2: likewise
    const m3 = await store(room);
    await announce(room, m3);
    await until(() => feed.seen.length === 3, "offsets 1-3, the gap read from history");
    expect(feed.offsets()).toEqual([1, 2, 3]);
    expect(feed.seen[0]?.content).toBe("m1");
    const m4 = await store(room);
    await announce(room, m4);
    await until(() => feed.seen.length === 4, "offset 4");
    expect(feed.lost).toEqual([]);
    feed.stop();
    await feeds.close();
  });

  it("ends when history cannot fill a gap either (trimmed, or lost in a failover)", async () => {
    const feeds = new RedisFeeds(connection, decode, () => {}, history);
    const room = newRoom();
    const feed = await watch(feeds, room);
    await store(room);
    await raw.xDel(logKey(room), "1-0");
    await announce(room, await store(room));
    await until(() => feed.lost.length === 1, "the feed to end");
    expect(feed.lost).toEqual(["feed skipped from offset 0 to 2: not in history"]);
    expect(feed.seen).toEqual([]);
    await feeds.close();
  });

  it("gives the messages it reads from history the epoch it delivers (the stream has none)", async () => {
    const feeds = new RedisFeeds(connection, decode, () => {}, history);
    const room = newRoom();
    await reset(room, "ep-one", 0);
    const feed = await watch(feeds, room);
    await store(room); // offset 1: never announced
    await announce(room, await store(room));
    await until(() => feed.seen.length === 2, "offsets 1-2, offset 1 read from history");
    expect(feed.seen.map((m) => [m.offset, m.epoch])).toEqual([
      [1, "ep-one"],
      [2, "ep-one"],
    ]);
    feed.stop();
    await feeds.close();
  });

  it("restarts at a new epoch's base, fills its gaps, and drops the old epoch's late announcements", async () => {
    const feeds = new RedisFeeds(connection, decode, () => {}, history);
    const room = newRoom();
    await reset(room, "ep-old", 0);
    const feed = await watch(feeds, room);
    const [o1, o2] = [await store(room), await store(room)];
    await announce(room, o1 as string);
    await announce(room, o2 as string);
    await until(() => feed.seen.length === 2, "the old epoch's offsets 1-2");
    // Offset 3 of the old log was stored on a master lost in a failover, which promoted a
    // replica without it: the new log goes on from offset 2 with a new epoch.
    const o3 = (o2 as string).replace('"o":2', '"o":3').replace('"c":"m2"', '"c":"lost"');
    await reset(room, "ep-new", 2);
    await store(room); // offset 3 of ep-new: never announced
    const n4 = await store(room);
    const n5 = await store(room);
    await announce(room, n5);
    await announce(room, o3); // late, of the log the feed left
    await announce(room, n4);
    await until(() => feed.seen.length === 5, "the new epoch's offsets 3-5");
    await sleep(GAP_HOLD_MS * 2);
    expect(feed.seen.map((m) => [m.offset, m.epoch])).toEqual([
      [1, "ep-old"],
      [2, "ep-old"],
      [3, "ep-new"],
      [4, "ep-new"],
      [5, "ep-new"],
    ]);
    expect(feed.lost).toEqual([]);
    feed.stop();
    await feeds.close();
  });

  it("a room with no log yet: its first epoch starts at its base", async () => {
    const feeds = new RedisFeeds(connection, decode, () => {}, history);
    const room = newRoom();
    const feed = await watch(feeds, room);
    await reset(room, "ep-first", 0);
    await store(room); // offset 1: never announced
    await announce(room, await store(room));
    await until(() => feed.seen.length === 2, "offsets 1-2 of the room's first epoch");
    expect(feed.seen.map((m) => [m.offset, m.epoch])).toEqual([
      [1, "ep-first"],
      [2, "ep-first"],
    ]);
    feed.stop();
    await feeds.close();
  });

  it("the feeds of several watchers of one room: one subscription, the same messages", async () => {
    const feeds = new RedisFeeds(connection, decode, () => {}, history);
    const room = newRoom();
    const [a, b] = await Promise.all([watch(feeds, room), watch(feeds, room)]);
    await announce(room, await store(room));
    await until(() => a.seen.length === 1 && b.seen.length === 1, "both watchers");
    a.stop();
    await announce(room, await store(room));
    await until(() => b.seen.length === 2, "the remaining watcher");
    expect(a.offsets()).toEqual([1]);
    b.stop();
    await feeds.close();
  });
});

describe("an unordered feed (announced by the append script)", () => {
  it("delivers in order and ends at a gap, which pub/sub should never leave", async () => {
    const feeds = new RedisFeeds(connection, decode, () => {});
    const room = newRoom();
    const feed = await watch(feeds, room);
    await announce(room, await store(room));
    await store(room);
    await announce(room, await store(room));
    await until(() => feed.lost.length === 1, "the feed to end");
    expect(feed.offsets()).toEqual([1]);
    expect(feed.lost).toEqual(["feed skipped from offset 1 to 3"]);
    await feeds.close();
  });
});
