// Presence that survives a reconnect (PRESENCE_GRACE_MS): a subscriber that comes back within the
// grace, after its stream dropped, a server restart or its node's death, leaves no LEAVE and no
// second JOIN in the durable history; one that does not come back gets exactly one LEAVE, also
// when the process that saw it leave was killed (SQLite) or its node died (Redis).
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createFailoverTransport, subscribeResumable } from "@switchboard/client";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type Message, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { type RedisCluster, sharedRedisCluster } from "./redis-cluster.js";
import { RedisServer } from "./redis-server.js";
import { chatClient, Pushable, StreamReader, uniqueRoom, within } from "./support.js";
import { skipWithout } from "./tools.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The room's stored JOIN and LEAVE messages, oldest first, as "JOIN alice". */
async function presenceEvents(client: Client<typeof ChatService>, room: string): Promise<string[]> {
  const events: string[] = [];
  let after = 0n;
  for (;;) {
    const page = await client.getHistory({ room, afterOffset: after, limit: 500 });
    for (const m of page.messages) {
      if (m.type === MessageType.JOIN || m.type === MessageType.LEAVE) {
        events.push(`${MessageType[m.type]} ${m.user}`);
      }
    }
    if (!page.hasMore) return events;
    after = page.messages.at(-1)?.offset ?? after;
  }
}

/** The room's members as "user:connections". */
async function members(client: Client<typeof ChatService>, room: string): Promise<string[]> {
  const { members } = await client.listMembers({ room });
  return members.map((m) => `${m.user}:${m.connections}`).sort();
}

async function until(condition: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** A plain SubscribeMessages stream that has joined (its welcome arrived). */
async function subscribe(client: Client<typeof ChatService>, room: string, user: string) {
  const reader = new StreamReader<Message>((signal) =>
    client.subscribeMessages({ room, user }, { signal }),
  );
  await reader.waitFor((m) => m.type === MessageType.SYSTEM);
  return reader;
}

/** A resumable subscription (libs/client) that reconnects across restarts and failovers. */
function resumable(baseUrls: string[], room: string, user: string) {
  const client = createClient(
    ChatService,
    createFailoverTransport(
      baseUrls.map((baseUrl) => createNodeTransport({ baseUrl, protocol: "grpc" })),
    ),
  );
  const controller = new AbortController();
  const states: string[] = [];
  const contents: string[] = [];
  const done = (async () => {
    try {
      for await (const m of subscribeResumable(
        client,
        { room, user, sinceOffset: 0n },
        {
          signal: controller.signal,
          backoff: { initialMs: 50, maxMs: 300, multiplier: 2, jitter: 0.1 },
          onStateChange: (state) => states.push(state),
        },
      )) {
        contents.push(m.content);
      }
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Canceled) throw err;
    }
  })();
  const lives = () => states.filter((s) => s === "live").length;
  return {
    states,
    contents,
    lives,
    stop: () => controller.abort(),
    /** The subscription's end, after stop(). */
    get done() {
      return within(done, 10_000, `${user}'s resumable subscription to stop`);
    },
  };
}

describe("presence grace on one node (SQLite)", () => {
  const GRACE = 1_500;
  let server: ServerProcess;
  let client: Client<typeof ChatService>;
  beforeAll(async () => {
    server = await startServer({ env: { PRESENCE_GRACE_MS: String(GRACE) } });
    client = chatClient(server.baseUrl);
  });
  afterAll(async () => {
    await server?.close();
  });

  test("a stream that drops and resumes within the grace stores no LEAVE and no JOIN; gone for longer, exactly one LEAVE", async () => {
    const room = uniqueRoom("reconnect");
    const first = await subscribe(client, room, "alice");
    await first.waitFor((m) => m.type === MessageType.JOIN);
    first.cancel();
    await first.ended;
    // Away, within the grace: still a member, with no connection.
    await sleep(300);
    expect(await members(client, room)).toEqual(["alice:0"]);

    const second = await subscribe(client, room, "alice");
    expect(await members(client, room)).toEqual(["alice:1"]);
    // A Chat session of the same user drops and comes back too.
    const out = new Pushable<{ room: string; user: string; content: string }>();
    const h2 = chatClient(server.baseUrl, {
      protocol: "grpc",
      httpVersion: "2",
      useBinaryFormat: true,
    });
    const chat = new StreamReader<Message>((signal) => h2.chat(out, { signal }));
    out.push({ room, user: "alice", content: "from chat" });
    await chat.waitFor((m) => m.content === "Echo: from chat");
    chat.cancel();
    await chat.ended;
    // Well past the grace of the first drop.
    await sleep(GRACE + 1_000);
    expect(await presenceEvents(client, room)).toEqual(["JOIN alice"]);
    expect(await members(client, room)).toEqual(["alice:1"]);

    second.cancel();
    await second.ended;
    await sleep(GRACE / 3);
    // Within the grace: no LEAVE yet.
    expect(await presenceEvents(client, room)).toEqual(["JOIN alice"]);
    await until(
      async () => (await presenceEvents(client, room)).length > 1,
      GRACE + 5_000,
      "LEAVE after the grace",
    );
    await sleep(GRACE);
    expect(await presenceEvents(client, room)).toEqual(["JOIN alice", "LEAVE alice"]);
    expect(await members(client, room)).toEqual([]);
  });

  test("a server restart (SIGTERM) under a subscriber that resumes stores no LEAVE/JOIN pair", async () => {
    const room = uniqueRoom("restart");
    const sub = resumable([server.baseUrl], room, "sam");
    try {
      await until(async () => (await presenceEvents(client, room)).length === 1, 10_000, "JOIN");
      await client.sendMessage({ room, user: "writer", content: "before" });
      expect((await server.kill("SIGTERM")).code).toBe(0);
      await server.restart();
      await until(async () => sub.lives() >= 2, 15_000, "the subscription to resume");
      await client.sendMessage({ room, user: "writer", content: "after" });
      await until(async () => sub.contents.includes("after"), 10_000, "the message after");
      await sleep(GRACE + 1_000);
      expect(await presenceEvents(client, room)).toEqual(["JOIN sam"]);
      expect(await members(client, room)).toEqual(["sam:1"]);
    } finally {
      sub.stop();
      await sub.done;
    }
  });

  test("kill -9 under a subscriber that does not come back: one LEAVE, a grace after the restart", async () => {
    const room = uniqueRoom("killed");
    const gone = await subscribe(client, room, "gone");
    await gone.waitFor((m) => m.type === MessageType.JOIN);
    await server.kill("SIGKILL");
    await gone.ended;
    await server.restart();
    // The restarted process knows "gone" was in the room, and gives them the grace.
    expect(await members(client, room)).toEqual(["gone:0"]);
    expect(await presenceEvents(client, room)).toEqual(["JOIN gone"]);
    await until(
      async () => (await presenceEvents(client, room)).length > 1,
      GRACE + 10_000,
      "LEAVE after the restart and the grace",
    );
    await sleep(GRACE);
    expect(await presenceEvents(client, room)).toEqual(["JOIN gone", "LEAVE gone"]);
    expect(await members(client, room)).toEqual([]);
  });
});

// The same on one Redis and on a Redis Cluster (3 masters, 3 replicas, the run's shared one),
// where the LEAVE's room and the dead node's heartbeat key are in different slots.
describe.skipIf(skipWithout("redis-server", "redis-cli")).each([
  { store: "one Redis", start: (): Promise<RedisServer | RedisCluster> => RedisServer.start() },
  {
    store: "Redis Cluster",
    start: (): Promise<RedisServer | RedisCluster> => sharedRedisCluster(),
  },
])("presence grace on $store: a node that dies", ({ start }) => {
  const GRACE = 1_000;
  let redis: RedisServer | RedisCluster;
  let nodes: ServerProcess[];
  let clients: Array<Client<typeof ChatService>>;
  beforeAll(async () => {
    redis = await start();
    nodes = await Promise.all(
      [0, 1, 2].map(() =>
        startServer({ env: { STORE: redis.url, PRESENCE_GRACE_MS: String(GRACE) } }),
      ),
    );
    clients = nodes.map((n) => chatClient(n.baseUrl));
  });
  afterAll(async () => {
    await Promise.all((nodes ?? []).map((n) => n.close()));
    await redis?.close();
  });

  test("kill -9 of a node: its member who fails over keeps presence, the one who does not gets one LEAVE, written once", async () => {
    const [a, b] = nodes as [ServerProcess, ServerProcess, ServerProcess];
    const viewer = clients[1] as Client<typeof ChatService>;
    const room = uniqueRoom("dead-node");
    // alice resumes on another node when hers dies; bob does not come back.
    const alice = resumable([a.baseUrl, b.baseUrl], room, "alice");
    const bob = await subscribe(clients[0] as Client<typeof ChatService>, room, "bob");
    try {
      await until(
        async () => (await presenceEvents(viewer, room)).length === 2,
        10_000,
        "both JOINs",
      );
      await a.kill("SIGKILL");
      await bob.ended;
      await until(async () => alice.lives() >= 2, 15_000, "alice to fail over");
      // Node a's heartbeat expires within 15 s; then b and c both find bob away, and one LEAVE
      // is stored a grace later.
      await until(
        async () => (await presenceEvents(viewer, room)).includes("LEAVE bob"),
        35_000,
        "bob's LEAVE",
      );
      // Both live nodes sweep; give them several more rounds.
      await sleep(2_000);
      const events = await presenceEvents(viewer, room);
      expect(events.slice(0, 2).sort()).toEqual(["JOIN alice", "JOIN bob"]);
      expect(events.slice(2)).toEqual(["LEAVE bob"]);
      expect(await members(clients[2] as Client<typeof ChatService>, room)).toEqual(["alice:1"]);
    } finally {
      alice.stop();
      await alice.done;
    }
  }, 90_000);
});
