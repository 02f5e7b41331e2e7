// WatchRooms as a client sees it: a snapshot of the room list, then pushed changes (a new room, a
// new message, a member joining, a second connection), coalesced for a busy room, filtered by a
// token's `rooms` claim, over Connect and gRPC; and across two nodes sharing a Redis store.
import { createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type RoomInfo, type RoomsEvent } from "@switchboard/proto/gen/chat/chat_pb";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { RedisServer } from "./redis-server.js";
import { chatClient, StreamReader, uniqueRoom } from "./support.js";
import { skipWithout } from "./tools.js";

const CASES = [
  { name: "connect", protocol: "connect", httpVersion: "1.1", useBinaryFormat: false },
  { name: "grpc", protocol: "grpc", httpVersion: "2", useBinaryFormat: true },
] as const;

/** The newest counts of `room` in what the reader received so far. */
function latest(events: readonly RoomsEvent[], room: string): RoomInfo | undefined {
  let found: RoomInfo | undefined;
  for (const e of events) for (const r of e.rooms) if (r.name === room) found = r;
  return found;
}

function watch(baseUrl: string, tc: (typeof CASES)[number], token?: string) {
  const client = createClient(
    ChatService,
    createNodeTransport({ baseUrl, ...tc, ...(token === undefined ? {} : { token }) }),
  );
  return new StreamReader<RoomsEvent>((signal) => client.watchRooms({}, { signal }));
}

describe.each(CASES)("WatchRooms over $name", (tc) => {
  let server: ServerProcess;
  beforeAll(async () => {
    // A short presence grace: the LEAVE (and the member count's drop to 0) comes soon after the
    // last subscription ends.
    server = await startServer({ store: "memory", env: { PRESENCE_GRACE_MS: "300" } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("sends a snapshot, then a new room, a new message and a member joining", async () => {
    const client = chatClient(server.baseUrl, tc);
    const existing = uniqueRoom("existing");
    await client.sendMessage({ room: existing, user: "ann", content: "before the watch" });

    const reader = watch(server.baseUrl, tc);
    const [snapshot] = await reader.count(1);
    expect(snapshot?.snapshot).toBe(true);
    expect(snapshot?.rooms.find((r) => r.name === existing)).toMatchObject({
      messageCount: 1n,
      lastOffset: 1n,
      memberCount: 0,
      subscriberCount: 0,
    });
    // The same data as ListRooms.
    const listed = (await client.listRooms({})).rooms.find((r) => r.name === existing);
    expect(listed?.memberCount).toBe(0);

    // A new room.
    const room = uniqueRoom("fresh");
    const sentAt = performance.now();
    await client.sendMessage({ room, user: "bob", content: "first" });
    const created = await reader.waitFor((e) => e.rooms.some((r) => r.name === room));
    const latencyMs = performance.now() - sentAt;
    expect(created.snapshot).toBe(false);
    expect(latest(reader.received, room)).toMatchObject({ messageCount: 1n, lastOffset: 1n });
    // A change made on this node is pushed at once (coalescing waits at most ~250 ms), not at
    // the next poll.
    expect(latencyMs).toBeLessThan(900);

    // A new message.
    await client.sendMessage({ room, user: "bob", content: "second" });
    await reader.waitFor(() => latest(reader.received, room)?.lastOffset === 2n);

    // A member joining (its JOIN is stored too), then a second connection of the same user:
    // users and connections are counted apart.
    const sub1 = new StreamReader((signal) =>
      client.subscribeMessages({ room, user: "carol" }, { signal }),
    );
    await reader.waitFor(() => latest(reader.received, room)?.memberCount === 1);
    expect(latest(reader.received, room)).toMatchObject({ subscriberCount: 1, lastOffset: 3n });
    const sub2 = new StreamReader((signal) =>
      client.subscribeMessages({ room, user: "carol" }, { signal }),
    );
    await reader.waitFor(() => latest(reader.received, room)?.subscriberCount === 2);
    expect(latest(reader.received, room)?.memberCount).toBe(1);
    const listedNow = (await client.listRooms({})).rooms.find((r) => r.name === room);
    expect(listedNow).toMatchObject({ memberCount: 1, subscriberCount: 2 });

    // Leaving: back to 0 members, with the LEAVE stored.
    sub1.cancel();
    sub2.cancel();
    await reader.waitFor(() => latest(reader.received, room)?.memberCount === 0);
    expect(latest(reader.received, room)?.lastOffset).toBe(4n);

    // Only what changed: the untouched room is never in an update.
    for (const e of reader.received.slice(1)) {
      expect(e.rooms.map((r) => r.name)).not.toContain(existing);
    }
    reader.cancel();
    expect((await reader.ended)?.code).toBe(1); // Canceled
  });

  it("coalesces a busy room: far fewer updates than messages, ending at the newest counts", async () => {
    const client = chatClient(server.baseUrl, tc);
    const room = uniqueRoom("busy");
    await client.sendMessage({ room, user: "dan", content: "0" });
    const reader = watch(server.baseUrl, tc);
    await reader.count(1);
    const from = reader.received.length;
    const startedMs = performance.now();
    const burst = 200;
    for (let i = 1; i <= burst; i++) {
      await client.sendMessage({ room, user: "dan", content: String(i) });
    }
    const elapsedMs = performance.now() - startedMs;
    await reader.waitFor((e) => e.rooms.some((r) => r.name === room && r.lastOffset === 201n));
    const updates = reader.received.slice(from).filter((e) => e.rooms.some((r) => r.name === room));
    // At most one update per ~250 ms (plus the one after the burst), never one per message.
    expect(updates.length).toBeLessThanOrEqual(Math.ceil(elapsedMs / 250) + 2);
    expect(updates.length).toBeLessThan(burst / 4);
    reader.cancel();
  });
});

describe("WatchRooms with a token's rooms claim", () => {
  const SECRET = "watch-rooms-test-secret-0123456789abcdef";
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ store: "memory", env: { AUTH_JWT_SECRET: SECRET } });
  });
  afterAll(async () => {
    await server?.close();
  });
  const mint = (sub: string, rooms?: string[]) =>
    new SignJWT(rooms === undefined ? {} : { rooms })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(sub)
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));

  it.each(CASES)("lists and pushes only the allowed rooms ($name)", async (tc) => {
    const admin = createClient(
      ChatService,
      createNodeTransport({ baseUrl: server.baseUrl, ...tc, token: await mint("admin") }),
    );
    const team = uniqueRoom("team");
    const secret = uniqueRoom("secret");
    await admin.sendMessage({ room: team, user: "x", content: "1" });
    await admin.sendMessage({ room: secret, user: "x", content: "1" });

    const limited = watch(server.baseUrl, tc, await mint("lee", ["team-*"]));
    const [snapshot] = await limited.count(1);
    const names = snapshot?.rooms.map((r) => r.name) ?? [];
    expect(names).toContain(team);
    expect(names).not.toContain(secret);

    // A change in a forbidden room sends nothing; one in an allowed room does.
    await admin.sendMessage({ room: secret, user: "x", content: "2" });
    await admin.sendMessage({ room: team, user: "x", content: "2" });
    await limited.waitFor(() => latest(limited.received, team)?.lastOffset === 2n);
    for (const e of limited.received) {
      expect(e.rooms.map((r) => r.name)).not.toContain(secret);
    }
    limited.cancel();

    // Without a token: refused like every other call.
    const anonymous = watch(server.baseUrl, tc);
    expect((await anonymous.ended)?.code).toBe(16); // Unauthenticated
  });
});

describe.skipIf(skipWithout("redis-server"))("WatchRooms across two nodes on Redis", () => {
  let redis: RedisServer;
  let nodes: ServerProcess[] = [];
  beforeAll(async () => {
    redis = await RedisServer.start();
    nodes = await Promise.all([0, 1].map(() => startServer({ env: { STORE: redis.url } })));
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await redis?.close();
  });

  it("a watcher on one node sees a message and a member on the other", async () => {
    const [a, b] = nodes as [ServerProcess, ServerProcess];
    const reader = watch(a.baseUrl, CASES[1]);
    await reader.count(1);
    const room = uniqueRoom("cross");
    const other = chatClient(b.baseUrl, CASES[1]);
    await other.sendMessage({ room, user: "zed", content: "from node b" });
    await reader.waitFor(() => latest(reader.received, room)?.lastOffset === 1n);
    const sub = new StreamReader((signal) =>
      other.subscribeMessages({ room, user: "yui" }, { signal }),
    );
    await reader.waitFor(() => latest(reader.received, room)?.memberCount === 1);
    expect(latest(reader.received, room)?.subscriberCount).toBe(1);
    sub.cancel();
    reader.cancel();
  });
});
