// Redis-only behaviour: history trimming by length and age, idempotency keys that expire, and
// presence that forgets a dead node. (The shared store contract is in message-store.test.ts.)
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../../test/harness.js";
import { RedisServer } from "../../../test/redis-server.js";
import { skipWithout } from "../../../test/tools.js";
import type { Backend } from "../backend.js";
import { type MessageDraft, type MessageKind, StoreUnavailableError } from "../message-store.js";
import { createRedisBackend, type RedisOptions } from "./backend.js";

const noRedis = skipWithout("redis-server");
let redis: RedisServer;
let db = 0;
beforeAll(async () => {
  if (noRedis) return;
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis?.close();
});

let seq = 0;
function draft(room: string, timestampMs = Date.now(), clientMessageId = ""): MessageDraft {
  seq++;
  return {
    id: `id-${seq}`,
    room,
    user: "u",
    content: `m${seq}`,
    kind: "chat",
    timestampMs,
    clientMessageId,
  };
}

/** A backend on a fresh database; `same` opens another node on the previous test's database. */
async function open(options: Partial<RedisOptions> = {}, same = false): Promise<Backend> {
  if (!same) db = (db % 15) + 1;
  return createRedisBackend({
    target: { kind: "redis", url: `redis://127.0.0.1:${redis.port}/${db}` },
    historyMaxLength: 0,
    historyMaxAgeS: 0,
    idempotencyTtlS: 60,
    onError: () => {},
    ...options,
  });
}

describe.skipIf(noRedis)("redis backend", () => {
  it("trims a room's history by length (approximately, whole stream nodes), offsets unchanged", async () => {
    const backend = await open({ historyMaxLength: 10 });
    for (let i = 0; i < 300; i++) await backend.store.append([draft("long")]);
    const [stats] = await backend.store.rooms();
    expect(stats?.lastOffset).toBe(300);
    expect(stats?.messageCount).toBeLessThan(300);
    const page = await backend.store.read({ room: "long", afterOffset: 0, limit: 500 });
    expect(page.messages[0]?.offset).toBeGreaterThan(1);
    expect(page.messages.at(-1)?.offset).toBe(300);
    await backend.close();
  });

  it("trims a room's history by age", async () => {
    const backend = await open({ historyMaxAgeS: 60 });
    const old = Date.now() - 120_000;
    for (let i = 0; i < 5; i++) await backend.store.append([draft("aged", old)]);
    for (let i = 0; i < 3; i++) await backend.store.append([draft("aged")]);
    await (backend.store as unknown as { trimByAge(): Promise<void> }).trimByAge();
    const page = await backend.store.read({ room: "aged", afterOffset: 0, limit: 50 });
    expect(page.messages.map((m) => m.offset)).toEqual([6, 7, 8]);
    await backend.close();
  });

  it("forgets an idempotency key after its time to live", async () => {
    const backend = await open({ idempotencyTtlS: 1 });
    const [first] = await backend.store.append([draft("keys", Date.now(), "k")]);
    const [again] = await backend.store.append([draft("keys", Date.now(), "k")]);
    expect(again?.duplicate).toBe(true);
    expect(again?.message.offset).toBe(first?.message.offset);
    await new Promise((r) => setTimeout(r, 1_600));
    const [later] = await backend.store.append([draft("keys", Date.now(), "k")]);
    expect(later?.duplicate).toBe(false);
    expect(later?.message.offset).toBe(2);
    await backend.close();
  });

  it("a Redis Cluster that cannot be reached at start is StoreUnavailableError", async () => {
    const port = await freePort();
    await expect(
      createRedisBackend({
        target: { kind: "redis-cluster", nodes: [`127.0.0.1:${port}`] },
        historyMaxLength: 0,
        historyMaxAgeS: 0,
        idempotencyTtlS: 60,
        onError: () => {},
      }),
    ).rejects.toThrow(StoreUnavailableError);
  });

  it("counts a user once across nodes, and forgets the members of a node whose heartbeat expired", async () => {
    const a = await open();
    const b = await open({}, true);
    expect(await a.presence.join("r", "alice")).toBe(true);
    expect(await b.presence.join("r", "alice")).toBe(false);
    expect(await b.presence.join("r", "bob")).toBe(true);
    expect((await a.presence.members("r")).map((m) => [m.user, m.connections])).toEqual([
      ["alice", 2],
      ["bob", 1],
    ]);
    // Node b dies: its heartbeat key expires (deleted here instead of waiting 15 s). Which node
    // is b? The one that holds bob's subscription.
    const raw = createClient({ url: `redis://127.0.0.1:${redis.port}/${db}` });
    await raw.connect();
    const nodeB = await nodeIdOf(raw, "r", "bob");
    expect(nodeB).toBeDefined();
    expect(await raw.del(`sb:node:${nodeB}`)).toBe(1);
    expect((await a.presence.members("r")).map((m) => [m.user, m.connections])).toEqual([
      ["alice", 1],
    ]);
    expect((await a.presence.subscriptions()).get("r")).toBe(1);
    // Alice's last live subscription is now a's: leaving it is her LEAVE.
    expect(await a.presence.leave("r", "alice")).toBe(true);
    await raw.close();
    await a.close();
    await b.close();
  });

  it("stores a JOIN once and a LEAVE once, only after the grace, and records who joined before it did", async () => {
    const a = await open({ presenceGraceMs: 300 });
    const b = await open({ presenceGraceMs: 300 }, true);
    const event = (kind: MessageKind, user: string): MessageDraft => ({
      ...draft("p"),
      user,
      kind,
    });
    const stored = async (backend: Backend, d: MessageDraft) =>
      !(await backend.store.append([d]))[0]?.duplicate;
    await a.presence.join("p", "alice");
    expect(await stored(a, event("join", "alice"))).toBe(true);
    // A second JOIN (a resume on another node) is not stored.
    expect(await stored(b, event("join", "alice"))).toBe(false);
    // Alice still has a live subscription: no LEAVE.
    expect(await stored(b, event("leave", "alice"))).toBe(false);
    expect(await a.presence.leave("p", "alice")).toBe(true);
    // Away, within the grace: listed with no connection, no LEAVE yet, nothing due.
    expect(await b.presence.members("p")).toMatchObject([{ user: "alice", connections: 0 }]);
    expect(await stored(b, event("leave", "alice"))).toBe(false);
    expect(await b.presence.due(300)).toEqual([]);
    await new Promise((r) => setTimeout(r, 350));
    expect(await b.presence.due(300)).toEqual([{ room: "p", user: "alice" }]);
    // Both nodes try; one LEAVE is stored.
    const tries = await Promise.all([
      stored(a, event("leave", "alice")),
      stored(b, event("leave", "alice")),
    ]);
    expect(tries.filter(Boolean)).toHaveLength(1);
    expect(await b.presence.members("p")).toEqual([]);
    expect(await a.store.joined()).toEqual([]);

    // History from before joined members were recorded: recorded once, at the next start.
    await a.presence.join("p", "carol");
    expect(await stored(a, event("join", "carol"))).toBe(true);
    const raw = createClient({ url: `redis://127.0.0.1:${redis.port}/${db}` });
    await raw.connect();
    await raw.del(["sb:{p}:joined", "sb:joined-recorded"]);
    const c = await open({ presenceGraceMs: 300 }, true);
    expect((await c.store.joined()).map((m) => m.user)).toEqual(["carol"]);
    await raw.close();
    for (const backend of [a, b, c]) await backend.close();
  });
});

describe.skipIf(noRedis)("redis backend: a node that dies", () => {
  it("its member is away from when a live node first finds them gone, and owed a LEAVE a grace later; one who resumed elsewhere is owed none", async () => {
    const GRACE = 300;
    const a = await open({ presenceGraceMs: GRACE });
    const b = await open({ presenceGraceMs: GRACE }, true);
    const raw = createClient({ url: `redis://127.0.0.1:${redis.port}/${db}` });
    await raw.connect();
    try {
      // bob and alice subscribe on node b; their JOINs are stored.
      for (const user of ["bob", "alice"]) {
        expect(await b.presence.join("d", user)).toBe(true);
        const [joined] = await b.store.append([{ ...draft("d"), user, kind: "join" }]);
        expect(joined?.duplicate).toBe(false);
      }
      expect(await a.presence.due(GRACE)).toEqual([]);
      // Node b dies (kill -9): nothing left, its heartbeat key expires (deleted here instead of
      // waiting 15 s). alice resumes on node a; bob does not come back.
      const nodeB = await nodeIdOf(raw, "d", "bob");
      expect(await raw.del(`sb:node:${nodeB}`)).toBe(1);
      expect(await a.presence.join("d", "alice")).toBe(true);
      // a's first sweep finds bob with no subscription on a live node: away from now, so
      // nothing is owed yet, and he is still listed (no connection) within the grace.
      expect(await a.presence.due(GRACE)).toEqual([]);
      // (The sweep stamped bob's absence on Redis's clock, this machine's, before this.)
      const found = Date.now();
      expect((await a.presence.members("d")).map((m) => [m.user, m.connections])).toEqual([
        ["bob", 0],
        ["alice", 1],
      ]);
      // Sweeps within the grace owe nothing and do not restart bob's absence.
      await new Promise((r) => setTimeout(r, GRACE / 2));
      expect(await a.presence.due(GRACE)).toEqual([]);
      await new Promise((r) => setTimeout(r, found + GRACE + 20 - Date.now()));
      expect(await a.presence.due(GRACE)).toEqual([{ room: "d", user: "bob" }]);
      const [left] = await a.store.append([{ ...draft("d"), user: "bob", kind: "leave" }]);
      expect(left?.duplicate).toBe(false);
      expect(await a.presence.due(GRACE)).toEqual([]);
      expect((await a.presence.members("d")).map((m) => m.user)).toEqual(["alice"]);
    } finally {
      await raw.close();
      await a.close();
      await b.close();
    }
  });
});

/** The node that holds `user`'s presence in `room`, from the presence hash's field names. */
async function nodeIdOf(raw: ReturnType<typeof createClient>, room: string, user: string) {
  const fields = await raw.hKeys(`sb:{${room}}:presence`);
  const field = fields.find((f) => f.endsWith(`\u001f${user}`));
  return field?.split("\u001f")[0];
}
