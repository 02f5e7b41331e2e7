// Several nodes on one Redis (Debian's redis-server, started here on a free port): fan-out and
// presence across nodes, gap-free offsets under concurrent publishers, a node killed under its
// subscribers, Redis itself stopped under load, and WORKERS=2 on one port.
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createFailoverTransport, subscribeResumable } from "@switchboard/client";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type Message } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { RedisServer } from "./redis-server.js";
import { chatClient, StreamReader, TRANSPORT_CASES, uniqueRoom, within } from "./support.js";
import { skipWithout } from "./tools.js";

/** Every stored offset of `room`, read through `client`, oldest first. */
async function historyOffsets(client: Client<typeof ChatService>, room: string): Promise<number[]> {
  const offsets: number[] = [];
  let after = 0n;
  for (;;) {
    const page = await client.getHistory({ room, afterOffset: after, limit: 500 });
    for (const m of page.messages) offsets.push(Number(m.offset));
    if (!page.hasMore) return offsets;
    after = page.messages.at(-1)?.offset ?? after;
  }
}

/** A resumable subscriber that records the stored offsets it sees, over the given nodes. */
function resumableReader(baseUrls: string[], room: string, user: string) {
  const transport = createFailoverTransport(
    baseUrls.map((baseUrl) => createNodeTransport({ baseUrl, protocol: "grpc" })),
  );
  const client = createClient(ChatService, transport);
  const controller = new AbortController();
  const offsets: number[] = [];
  const states: string[] = [];
  const done = (async () => {
    try {
      for await (const m of subscribeResumable(
        client,
        { room, user, sinceOffset: 0n },
        {
          signal: controller.signal,
          backoff: { initialMs: 50, maxMs: 500, multiplier: 2, jitter: 0.1 },
          onStateChange: (state) => states.push(state),
        },
      )) {
        if (m.offset > 0n) offsets.push(Number(m.offset));
      }
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Canceled) throw err;
    }
  })();
  return {
    offsets,
    states,
    stop: () => controller.abort(),
    /** The subscription's end, after stop(). */
    get done() {
      return within(done, 10_000, `${user}'s resumable subscription to stop`);
    },
  };
}

async function until(condition: () => boolean | Promise<boolean>, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

const noRedis = skipWithout("redis-server");

describe.skipIf(noRedis)("three nodes on one Redis", () => {
  let redis: RedisServer;
  let nodes: ServerProcess[];
  let clients: Array<Client<typeof ChatService>>;

  beforeAll(async () => {
    redis = await RedisServer.start();
    nodes = await Promise.all(
      [0, 1, 2].map(() => startServer({ env: { STORE: redis.url, PRESENCE_GRACE_MS: "200" } })),
    );
    clients = nodes.map((n) => chatClient(n.baseUrl));
  });
  afterAll(async () => {
    await Promise.all((nodes ?? []).map((n) => n.close()));
    await redis?.close();
  });

  test("a message sent to node A reaches subscribers on B and C, in order", async () => {
    const room = uniqueRoom("fanout");
    const readers = [1, 2].map(
      (i) =>
        new StreamReader<Message>((signal) =>
          (clients[i] as Client<typeof ChatService>).subscribeMessages(
            { room, user: `reader-${i}` },
            { signal },
          ),
        ),
    );
    for (const r of readers) await r.waitFor((m) => m.id === "system");
    const sent: bigint[] = [];
    for (let i = 0; i < 20; i++) {
      sent.push(
        (
          await (clients[0] as Client<typeof ChatService>).sendMessage({
            room,
            user: "alice",
            content: `m${i}`,
          })
        ).offset,
      );
    }
    for (const r of readers) {
      await r.waitFor((m) => m.content === "m19");
      const chats = r.received.filter((m) => m.user === "alice");
      expect(chats.map((m) => m.content)).toEqual(range(0, 19).map((i) => `m${i}`));
      expect(chats.map((m) => m.offset)).toEqual(sent);
      r.cancel();
    }
  });

  test("ListMembers on any node shows the members of every node", async () => {
    const room = uniqueRoom("members");
    const readers = nodes.map(
      (_, i) =>
        new StreamReader<Message>((signal) =>
          (clients[i] as Client<typeof ChatService>).subscribeMessages(
            { room, user: `user-${i}` },
            { signal },
          ),
        ),
    );
    for (const r of readers) await r.waitFor((m) => m.id === "system");
    for (const client of clients) {
      const { members } = await client.listMembers({ room });
      expect(members.map((m) => m.user).sort()).toEqual(["user-0", "user-1", "user-2"]);
    }
    const { rooms } = await (clients[1] as Client<typeof ChatService>).listRooms({});
    expect(rooms.find((r) => r.name === room)?.subscriberCount).toBe(3);
    for (const r of readers) r.cancel();
    await until(
      async () =>
        (await (clients[2] as Client<typeof ChatService>).listMembers({ room })).members.length ===
        0,
      5_000,
      "members to leave",
    );
  });

  test("two nodes publishing to one room at once: offsets with no gap and no duplicate", async () => {
    const room = uniqueRoom("race");
    const sends = range(0, 199).map((i) =>
      (clients[i % 2] as Client<typeof ChatService>).sendMessage({
        room,
        user: "racer",
        content: `r${i}`,
      }),
    );
    const offsets = (await Promise.all(sends)).map((r) => Number(r.offset));
    expect(sorted(offsets)).toEqual(range(1, 200));
    expect(await historyOffsets(clients[2] as Client<typeof ChatService>, room)).toEqual(
      range(1, 200),
    );
  });

  test("kill -9 of a node: its subscribers resume on another node with no gap or duplicate", async () => {
    const room = uniqueRoom("failover");
    const [a, , c] = nodes as [ServerProcess, ServerProcess, ServerProcess];
    const readers = [0, 1, 2].map((i) => resumableReader([c.baseUrl, a.baseUrl], room, `sub-${i}`));
    await until(() => readers.every((r) => r.states.includes("live")), 10_000, "subscribers live");

    const writer = clients[0] as Client<typeof ChatService>;
    const acked: number[] = [];
    let writing = true;
    const writes = (async () => {
      for (let i = 0; writing; i++) {
        acked.push(
          Number((await writer.sendMessage({ room, user: "writer", content: `w${i}` })).offset),
        );
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await until(() => acked.length >= 30, 10_000, "messages before the kill");
    const ackedBeforeKill = [...acked];
    await c.kill("SIGKILL");
    await until(
      () => acked.length >= ackedBeforeKill.length + 30,
      10_000,
      "messages after the kill",
    );
    writing = false;
    await writes;

    const history = await historyOffsets(writer, room);
    for (const offset of ackedBeforeKill) expect(history).toContain(offset);
    const last = history.at(-1) as number;
    await until(
      () => readers.every((r) => r.offsets.at(-1) === last),
      15_000,
      "subscribers to catch up",
    );
    for (const r of readers) {
      // Everything stored from the subscriber's first offset on, once each, in order.
      const first = r.offsets[0] as number;
      expect(r.offsets).toEqual(history.filter((o) => o >= first));
      expect(r.states).toContain("reconnecting");
      r.stop();
      await r.done;
    }
    await c.restart();
  });
});

describe.skipIf(noRedis)("Redis stopped for 5 seconds under load", () => {
  let redis: RedisServer;
  let nodes: ServerProcess[];

  beforeAll(async () => {
    redis = await RedisServer.start();
    nodes = await Promise.all(
      [0, 1].map(() => startServer({ env: { STORE: redis.url, PRESENCE_GRACE_MS: "200" } })),
    );
  });
  afterAll(async () => {
    await Promise.all((nodes ?? []).map((n) => n.close()));
    await redis?.close();
  });

  test("calls fail with Unavailable meanwhile; afterwards nothing acknowledged is missing and subscribers catch up", async () => {
    const room = uniqueRoom("outage");
    const [a, b] = nodes as [ServerProcess, ServerProcess];
    const readers = [a, b].map((n, i) => resumableReader([n.baseUrl], room, `sub-${i}`));
    await until(() => readers.every((r) => r.states.includes("live")), 10_000, "subscribers live");

    const writers = [chatClient(a.baseUrl), chatClient(b.baseUrl)];
    const acked: number[] = [];
    const failures: Code[] = [];
    let writing = true;
    const writes = writers.map(async (client, w) => {
      for (let i = 0; writing; i++) {
        try {
          const r = await client.sendMessage({ room, user: `writer-${w}`, content: `w${w}-${i}` });
          acked.push(Number(r.offset));
        } catch (err) {
          failures.push(ConnectError.from(err).code);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    await until(() => acked.length >= 20, 10_000, "acknowledged writes before the outage");
    await redis.stop();
    const ackedAtStop = acked.length;
    await new Promise((r) => setTimeout(r, 5_000));
    // Nothing was acknowledged while Redis was down (a write in flight at the stop may have been).
    expect(acked.length - ackedAtStop).toBeLessThanOrEqual(2);
    await redis.start();
    await until(() => acked.length >= ackedAtStop + 20, 20_000, "writes to succeed again");
    writing = false;
    await Promise.all(writes);

    expect(failures.length).toBeGreaterThan(0);
    expect(new Set(failures)).toEqual(new Set([Code.Unavailable]));
    for (const n of nodes) expect(n.pid).toBeDefined();

    const history = await historyOffsets(writers[0] as Client<typeof ChatService>, room);
    expect(history).toEqual(range(1, history.length));
    for (const offset of acked) expect(history).toContain(offset);
    const last = history.at(-1) as number;
    await until(
      () => readers.every((r) => r.offsets.at(-1) === last),
      20_000,
      "subscribers to catch up",
    );
    for (const r of readers) {
      const first = r.offsets[0] as number;
      expect(r.offsets).toEqual(history.filter((o) => o >= first));
      r.stop();
      await r.done;
    }
  });
});

describe.skipIf(noRedis)("WORKERS=2 on one port", () => {
  let redis: RedisServer;
  let server: ServerProcess;

  beforeAll(async () => {
    redis = await RedisServer.start();
    server = await startServer({ env: { STORE: redis.url, WORKERS: "2" } });
    await server.waitForRecord((r) => r.msg === "all workers listening", 20_000);
  });
  afterAll(async () => {
    await server?.close();
    await redis?.close();
  });

  test("every protocol is served, and a message published through one worker reaches subscribers on the other", async () => {
    const room = uniqueRoom("workers");
    // One connection per transport case; the primary hands connections to workers round-robin.
    const readers = TRANSPORT_CASES.map(
      (tc, i) =>
        new StreamReader<Message>((signal) =>
          chatClient(server.baseUrl, tc).subscribeMessages(
            { room, user: `reader-${i}` },
            { signal },
          ),
        ),
    );
    for (const r of readers) await r.waitFor((m) => m.id === "system", 10_000);
    for (const [i, tc] of TRANSPORT_CASES.entries()) {
      await within(
        chatClient(server.baseUrl, tc).sendMessage({
          room,
          user: "sender",
          content: `via ${tc.name} ${i}`,
        }),
        5_000,
        `SendMessage over ${tc.name}`,
      );
    }
    for (const r of readers) {
      await r.waitFor((m) => m.content.startsWith(`via ${TRANSPORT_CASES.at(-1)?.name}`), 10_000);
      expect(r.received.filter((m) => m.user === "sender")).toHaveLength(TRANSPORT_CASES.length);
      r.cancel();
    }
    // The access log names the worker that served each call: both served subscriptions.
    await until(
      () =>
        server
          .records()
          .filter((r) => r.msg === "rpc" && String(r.method).endsWith("/SubscribeMessages"))
          .length >= readers.length,
      10_000,
      "SubscribeMessages log lines",
    );
    const workers = new Set(
      server
        .records()
        .filter((r) => r.msg === "rpc" && String(r.method).endsWith("/SubscribeMessages"))
        .map((r) => String(r.instance).split("#")[1]),
    );
    expect(workers).toEqual(new Set(["1", "2"]));
  });
});
