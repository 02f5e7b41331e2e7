// The per-identity limits are shared by every node and worker on one Redis: 2 Switchboard nodes
// with WORKERS=2 each (4 server processes) hold one publish token bucket and one open-stream
// count per identity between them, not one per process; and a process killed with kill -9 gives
// its stream slots back once their lease runs out. Authentication is off, so the identity is the
// peer's address: every call here comes from 127.0.0.2 (CLIENT_ADDRESS), an identity no other
// test file uses, since the Redis Cluster is the run's shared one, and their streams from
// 127.0.0.1 count against 127.0.0.1's cap there.
import { request } from "node:http";
import { connect } from "node:net";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ChatService, type Message } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { sharedRedisCluster } from "./redis-cluster.js";
import { RedisServer } from "./redis-server.js";
import { codeName, StreamReader, uniqueRoom } from "./support.js";
import { skipWithout } from "./tools.js";

const RATE = 2;
const BURST = 10;
const MAX_STREAMS = 3;
/** How long the publishers hammer, ms. */
const WINDOW_MS = 3_000;

/** This file's client address: its identity for the limits (loopback is all of 127/8). */
const CLIENT_ADDRESS = "127.0.0.2";

/** One Connect unary call (JSON) on a connection of its own, so the primary may hand it to any worker. */
function post(url: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        agent: false,
        localAddress: CLIENT_ADDRESS,
        headers: { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

/** A subscription on a connection of its own (an HTTP/2 session per transport). */
function subscribe(baseUrl: string, room: string): StreamReader<Message> {
  const client = createClient(
    ChatService,
    createGrpcTransport({
      baseUrl,
      nodeOptions: {
        createConnection: (authority: URL) =>
          connect({
            host: authority.hostname,
            port: Number(authority.port),
            localAddress: CLIENT_ADDRESS,
          }),
      },
    }),
  );
  return new StreamReader<Message>((signal) =>
    client.subscribeMessages({ room, user: "sub" }, { signal }),
  );
}

/** Whether a subscription opened (its first message came) or was refused (it ended first). */
async function opened(reader: StreamReader<Message>): Promise<string> {
  return reader.count(1, 10_000).then(
    () => "open",
    async () => {
      const err = await reader.ended;
      return err === undefined ? "clean end" : `${codeName(err.code)}: ${err.rawMessage}`;
    },
  );
}

/** The `instance` of every process that logged a call of `method`. */
function instancesServing(nodes: ServerProcess[], method: string): Set<string> {
  return new Set(
    nodes.flatMap((n) =>
      n
        .records()
        .filter((r) => r.msg === "rpc" && String(r.method ?? r.path ?? "").includes(method))
        .map((r) => String(r.instance)),
    ),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Redis store the nodes share: one server, or a 3-master + 3-replica cluster. */
interface SharedStore {
  readonly url: string;
  close(): Promise<void>;
}

const stores: [string, () => Promise<SharedStore>][] = [
  ["one Redis", () => RedisServer.start()],
  ["a Redis Cluster", () => sharedRedisCluster()],
];

const noRedis = skipWithout("redis-server", "redis-cli");

describe.skipIf(noRedis).each(stores)(
  "limits shared by 2 nodes × WORKERS=2 on %s",
  (_, startStore) => {
    let redis: SharedStore;
    let nodes: ServerProcess[] = [];

    beforeAll(async () => {
      redis = await startStore();
      nodes = await Promise.all(
        [0, 1].map(() =>
          startServer({
            env: {
              STORE: redis.url,
              WORKERS: "2",
              PUBLISH_RATE: String(RATE),
              PUBLISH_BURST: String(BURST),
              MAX_STREAMS_PER_IDENTITY: String(MAX_STREAMS),
            },
          }),
        ),
      );
      await Promise.all(
        nodes.map((n) => n.waitForRecord((r) => r.msg === "all workers listening", 30_000)),
      );
    }, 60_000);
    afterAll(async () => {
      await Promise.all(nodes.map((n) => n.close()));
      await redis?.close();
    });

    it("accepts one bucket's worth of publishes from one identity across the 4 processes, not 4×", async () => {
      const room = uniqueRoom("shared-rate");
      let accepted = 0;
      let refused = 0;
      const others: string[] = [];
      let i = 0;
      const started = performance.now();
      // Four publishers in turn over both nodes, each call on a new connection (round-robin over
      // each node's workers), until the window is over.
      await Promise.all(
        [0, 1, 2, 3].map(async () => {
          while (performance.now() - started < WINDOW_MS) {
            const node = nodes[i++ % 2] as ServerProcess;
            const res = await post(`${node.baseUrl}/chat.ChatService/SendMessage`, {
              room,
              user: "u",
              content: `m${i}`,
            });
            if (res.status === 200) accepted++;
            else if (
              res.status === 429 &&
              /"code":"resource_exhausted".*publish rate exceeded \(PUBLISH_RATE 2\/s\); retry in \d+ ms/.test(
                res.body,
              )
            )
              refused++;
            else others.push(`${res.status} ${res.body}`);
          }
        }),
      );
      const elapsedS = (performance.now() - started) / 1000;
      const expected = BURST + RATE * elapsedS;
      console.info(
        `publish: ${accepted} accepted, ${refused} refused in ${elapsedS.toFixed(2)} s; ` +
          `one shared bucket allows ${expected.toFixed(1)}, one per process ${(4 * expected).toFixed(1)}`,
      );
      expect(others).toEqual([]);
      // Every one of the 4 processes served some of the calls.
      expect(instancesServing(nodes, "SendMessage").size).toBe(4);
      // Enough calls to exceed even four buckets, so that the bound below means something.
      expect(accepted + refused).toBeGreaterThan(4 * expected);
      // At most one bucket's worth: burst + rate × window (+1 for rounding)…
      expect(accepted).toBeLessThanOrEqual(Math.ceil(expected) + 1);
      // …and the shared bucket is drained as it refills (a slow first call may cost a second).
      expect(accepted).toBeGreaterThanOrEqual(Math.floor(expected - RATE) - 1);
      // What was accepted is stored, once.
      const history = await post(`${nodes[0]?.baseUrl}/chat.ChatService/GetHistory`, {
        room,
        limit: 500,
      });
      expect((JSON.parse(history.body) as { messages?: unknown[] }).messages ?? []).toHaveLength(
        accepted,
      );
    }, 30_000);

    it("holds one identity to MAX_STREAMS_PER_IDENTITY open streams across the 4 processes", async () => {
      const readers: StreamReader<Message>[] = [];
      const outcomes: string[] = [];
      for (let k = 0; k < 8; k++) {
        const reader = subscribe((nodes[k % 2] as ServerProcess).baseUrl, uniqueRoom("cap"));
        readers.push(reader);
        outcomes.push(await opened(reader));
      }
      console.info(`streams: ${outcomes.filter((o) => o === "open").length} of 8 opened`);
      expect(outcomes.filter((o) => o === "open")).toHaveLength(MAX_STREAMS);
      for (const o of outcomes.filter((x) => x !== "open")) {
        expect(o).toBe(
          `ResourceExhausted: too many open streams (MAX_STREAMS_PER_IDENTITY ${MAX_STREAMS})`,
        );
      }
      // Closing one stream, on whichever process held it, frees a place on every process.
      const held = readers.filter((_, k) => outcomes[k] === "open");
      held[0]?.cancel();
      await held[0]?.ended;
      let again = "";
      for (let attempt = 0; attempt < 50 && again !== "open"; attempt++) {
        const reader = subscribe((nodes[attempt % 2] as ServerProcess).baseUrl, uniqueRoom("cap"));
        readers.push(reader);
        again = await opened(reader);
        if (again !== "open") await sleep(100);
      }
      expect(again).toBe("open");
      for (const r of readers) r.cancel();
      await Promise.all(readers.map((r) => r.ended));
      // All 4 processes took part (each logs its calls when they end).
      await sleep(500);
      expect(instancesServing(nodes, "SubscribeMessages").size).toBe(4);
    }, 60_000);
  },
);

describe.skipIf(noRedis)("a process killed with kill -9 gives its stream slots back", () => {
  let redis: RedisServer;
  let nodes: ServerProcess[] = [];

  beforeAll(async () => {
    redis = await RedisServer.start();
    nodes = await Promise.all(
      [0, 1].map(() => startServer({ env: { STORE: redis.url, MAX_STREAMS_PER_IDENTITY: "2" } })),
    );
  }, 60_000);
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await redis?.close();
  });

  it("within the slot lease (15 s), without any other node noticing the death", async () => {
    const [doomed, survivor] = nodes as [ServerProcess, ServerProcess];
    const held = [
      subscribe(doomed.baseUrl, uniqueRoom("doomed")),
      subscribe(doomed.baseUrl, uniqueRoom("doomed")),
    ];
    expect(await Promise.all(held.map(opened))).toEqual(["open", "open"]);
    const refused = subscribe(survivor.baseUrl, uniqueRoom("survivor"));
    expect(await opened(refused)).toMatch(/^ResourceExhausted/);

    await doomed.kill("SIGKILL");
    const killedAt = performance.now();
    // Right after the kill the dead process's slots still count…
    const early = subscribe(survivor.baseUrl, uniqueRoom("survivor"));
    expect(await opened(early)).toMatch(/^ResourceExhausted/);
    // …and come back once their lease runs out.
    let back: StreamReader<Message> | undefined;
    const readers: StreamReader<Message>[] = [early, refused];
    while (back === undefined && performance.now() - killedAt < 25_000) {
      const reader = subscribe(survivor.baseUrl, uniqueRoom("survivor"));
      readers.push(reader);
      if ((await opened(reader)) === "open") back = reader;
      else await sleep(500);
    }
    const afterS = (performance.now() - killedAt) / 1000;
    console.info(`stream slots of the killed process came back after ${afterS.toFixed(1)} s`);
    expect(back).toBeDefined();
    expect(afterS).toBeLessThan(25);
    // Both of them: a second stream opens too, a third does not.
    const second = subscribe(survivor.baseUrl, uniqueRoom("survivor"));
    const third = subscribe(survivor.baseUrl, uniqueRoom("survivor"));
    readers.push(second, third);
    expect(await opened(second)).toBe("open");
    expect(await opened(third)).toMatch(/^ResourceExhausted/);
    for (const r of [...readers, ...held]) r.cancel();
  }, 60_000);
});
