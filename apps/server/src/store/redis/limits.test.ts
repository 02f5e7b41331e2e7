// The shared limits' Lua scripts (lua/limit-*.lua) against a real Redis: several counters, as
// several processes would hold them, each on a connection of its own.
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../../../test/redis-server.js";
import { skipWithout } from "../../../test/tools.js";
import type { LimitCounter, StreamSlot } from "../../ops/limits.js";
import { connectRedis, type RedisConnection } from "./connection.js";
import { bucketKey, createRedisLimitCounter, streamsKey } from "./limits.js";

const noRedis = skipWithout("redis-server");
let redis: RedisServer;
const connections: RedisConnection[] = [];
const counters: LimitCounter[] = [];
let n = 0;
/** A plain node-redis client, to look at the keys the scripts wrote. */
let inspect: ReturnType<typeof createClient>;

beforeAll(async () => {
  if (noRedis) return;
  redis = await RedisServer.start();
  inspect = await createClient({ url: redis.url }).connect();
});
afterAll(async () => {
  await inspect?.close();
  await Promise.all(counters.map((c) => c.close().catch(() => {})));
  await Promise.all(connections.map((c) => c.close().catch(() => {})));
  await redis?.close();
});

/** A counter on a connection of its own, as one server process has it. */
async function proc(leaseMs?: number): Promise<{ counter: LimitCounter; conn: RedisConnection }> {
  const conn = await connectRedis({ kind: "redis", url: redis.url }, () => {});
  connections.push(conn);
  const counter = createRedisLimitCounter(conn, {
    owner: `test-${++n}`,
    onError: () => {},
    ...(leaseMs === undefined ? {} : { leaseMs }),
  });
  counters.push(counter);
  return { counter, conn };
}

const identity = (what: string) => `${what}-${Math.random().toString(36).slice(2)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The hash tag of a key, as Redis Cluster reads it (the slot is CRC16 of it). */
function hashTag(key: string): string {
  const open = key.indexOf("{");
  const close = key.indexOf("}", open + 1);
  return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
}

describe.skipIf(noRedis)("the publish token bucket in Redis (limit-take.lua)", () => {
  it("is one bucket for every process: burst, then the wait in ms; refills on Redis's clock", async () => {
    const RATE = 2;
    const [a, b] = [await proc(), await proc()];
    const who = identity("bucket");
    // Burst 5 at 2/s: three from one process and two from another empty it. (A token comes back
    // every 500 ms: the five takes have that long, a margin for a loaded machine.)
    const taken = [
      await a.counter.takePublishToken(who, RATE, 5),
      await b.counter.takePublishToken(who, RATE, 5),
      await a.counter.takePublishToken(who, RATE, 5),
      await b.counter.takePublishToken(who, RATE, 5),
      await a.counter.takePublishToken(who, RATE, 5),
    ];
    expect(taken).toEqual([0, 0, 0, 0, 0]);
    const wait = await b.counter.takePublishToken(who, RATE, 5);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(1000 / RATE);
    // A refusal takes nothing: after the wait (and a margin) exactly one more is there.
    await sleep(wait + 20);
    expect(await a.counter.takePublishToken(who, RATE, 5)).toBe(0);
    // The bucket's time is Redis's (TIME), and the key expires once it would be full again.
    const [seconds, micros] = (await inspect.sendCommand(["TIME"])) as [string, string];
    const redisNowMs = Number(seconds) * 1000 + Number(micros) / 1000;
    const at = Number(await inspect.hGet(bucketKey(who), "at"));
    expect(Math.abs(at - redisNowMs)).toBeLessThan(2_000);
    const ttl = await inspect.pTTL(bucketKey(who));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual((5 * 1000) / RATE + 1_000);
  });

  it("is atomic: 200 concurrent takes from 4 processes get exactly the burst (plus the refill)", async () => {
    const procs = await Promise.all([0, 1, 2, 3].map(() => proc()));
    const who = identity("race");
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (procs[i % 4] as { counter: LimitCounter }).counter.takePublishToken(who, 1, 50),
      ),
    );
    const elapsedS = (Date.now() - started) / 1000;
    const accepted = results.filter((w) => w === 0).length;
    expect(accepted).toBeGreaterThanOrEqual(50);
    expect(accepted).toBeLessThanOrEqual(50 + Math.ceil(elapsedS * 1));
    for (const w of results) if (w > 0) expect(w).toBeLessThanOrEqual(1_000);
  });

  it("keeps every identity in one slot of its own: one hash tag per identity", () => {
    for (const who of ["alice", "10.0.0.1", "[::1]", "odd}name", "odd{name"]) {
      expect(hashTag(bucketKey(who))).toBe(hashTag(streamsKey(who)));
      expect(hashTag(bucketKey(who)).startsWith("lim:")).toBe(true);
    }
    expect(hashTag(bucketKey("alice"))).not.toBe(hashTag(bucketKey("bob")));
  });
});

describe.skipIf(noRedis)("the stream slots in Redis (limit-stream-acquire.lua, leases)", () => {
  it("counts one identity's streams across processes; a release gives a slot back", async () => {
    const [a, b] = [await proc(), await proc()];
    const who = identity("streams");
    const slots = [
      await a.counter.acquireStream(who, 3),
      await b.counter.acquireStream(who, 3),
      await a.counter.acquireStream(who, 3),
    ];
    expect(slots.every((s) => s !== undefined)).toBe(true);
    expect(await b.counter.acquireStream(who, 3)).toBeUndefined();
    expect(await a.counter.acquireStream(who, 3)).toBeUndefined();
    // A refusal adds nothing.
    expect(await inspect.zCard(streamsKey(who))).toBe(3);
    // Another identity is not affected.
    expect(await b.counter.acquireStream(identity("other"), 3)).toBeDefined();
    (slots[1] as StreamSlot).release();
    (slots[1] as StreamSlot).release(); // twice: still one slot back
    let again: StreamSlot | undefined;
    for (let i = 0; i < 20 && again === undefined; i++) {
      again = await a.counter.acquireStream(who, 3);
      if (again === undefined) await sleep(10);
    }
    expect(again).toBeDefined();
    expect(await b.counter.acquireStream(who, 3)).toBeUndefined();
    expect(await inspect.zCard(streamsKey(who))).toBe(3);
  });

  it("is atomic: 40 concurrent opens from 4 processes get exactly the cap", async () => {
    const procs = await Promise.all([0, 1, 2, 3].map(() => proc()));
    const who = identity("stream-race");
    const slots = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        (procs[i % 4] as { counter: LimitCounter }).counter.acquireStream(who, 7),
      ),
    );
    expect(slots.filter((s) => s !== undefined)).toHaveLength(7);
  });

  it("a live process's slots stay held past their lease (renewed); a dead one's come back", async () => {
    const leaseMs = 600;
    const [live, dead, other] = [await proc(leaseMs), await proc(leaseMs), await proc(leaseMs)];
    const who = identity("lease");
    expect(await live.counter.acquireStream(who, 2)).toBeDefined();
    expect(await dead.counter.acquireStream(who, 2)).toBeDefined();
    // The "dead" process loses Redis for good (as kill -9 looks to Redis): no more renewals.
    await dead.conn.close();
    expect(await other.counter.acquireStream(who, 2)).toBeUndefined();
    // Past two leases: the live slot was renewed and still counts, the dead one ran out.
    await sleep(2 * leaseMs + 100);
    expect(await other.counter.acquireStream(who, 2)).toBeDefined();
    expect(await other.counter.acquireStream(who, 2)).toBeUndefined();
    const members = await inspect.zRange(streamsKey(who), 0, -1);
    expect(members).toHaveLength(2);
    expect(members.some((m) => m.startsWith(`test-${n - 2}:`))).toBe(true); // live's
    expect(members.some((m) => m.startsWith(`test-${n - 1}:`))).toBe(false); // dead's
    // The key lives no longer than its latest lease.
    const ttl = await inspect.pTTL(streamsKey(who));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(leaseMs);
  });

  it("close() gives back every slot the process holds", async () => {
    const [a, b] = [await proc(), await proc()];
    const who = identity("close");
    expect(await a.counter.acquireStream(who, 2)).toBeDefined();
    expect(await a.counter.acquireStream(who, 2)).toBeDefined();
    expect(await b.counter.acquireStream(who, 2)).toBeUndefined();
    await a.counter.close();
    expect(await b.counter.acquireStream(who, 2)).toBeDefined();
    expect(await b.counter.acquireStream(who, 2)).toBeDefined();
  });

  it("fails with StoreUnavailableError while Redis cannot be reached", async () => {
    const a = await proc();
    await a.conn.close();
    await expect(a.counter.acquireStream(identity("down"), 2)).rejects.toThrow(/redis unavailable/);
    await expect(a.counter.takePublishToken(identity("down"), 1, 1)).rejects.toThrow(
      /redis unavailable/,
    );
  });
});
