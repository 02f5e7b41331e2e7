// The first subscription on freshly started Switchboard nodes on a Redis Cluster (the run's
// shared one), as a plain gRPC client sees it: for each of 10 fresh pairs of nodes (apps built
// in this process, each with connections of its own to the cluster, as a fresh server process
// has), @grpc/grpc-js (proto loaded at run time, no Switchboard code) subscribes on one node and, once
// the stream is live (its welcome came), sends on the other over the next 1.5 s; every stream
// must stay open and receive every message, live.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { buildApp } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { LogTail } from "../src/telemetry/log-tail.js";
import { freePort, REPO_DIR } from "./harness.js";
import { type RedisCluster, redisClusterTools, sharedRedisCluster } from "./redis-cluster.js";
import { uniqueRoom } from "./support.js";

const missing = await redisClusterTools();

/** A message as proto-loader decodes it (snake_case, uint64 as a string). */
interface WireMessage {
  content: string;
  type: string;
  offset: string;
}

interface ChatClient extends grpc.Client {
  SendMessage(req: object, cb: (err: grpc.ServiceError | null) => void): void;
  SubscribeMessages(req: object): grpc.ClientReadableStream<WireMessage>;
}

const definition = protoLoader.loadSync("chat/chat.proto", {
  includeDirs: [join(REPO_DIR, "proto")],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const { chat } = grpc.loadPackageDefinition(definition) as unknown as {
  chat: { ChatService: grpc.ServiceClientConstructor };
};
/** A fresh node: the server's app, on a free port, logging to memory. */
interface Node {
  app: FastifyInstance;
  port: number;
  log: LogTail;
}

async function startNode(store: string): Promise<Node> {
  const port = await freePort();
  const config = loadConfig([], { STORE: store, PORT: String(port), HOST: "127.0.0.1" }, undefined);
  const log = new LogTail(200);
  const app = await buildApp(config, { logger: pino({ level: "info" }, log), logTail: log });
  await app.listen({ port, host: "127.0.0.1" });
  return { app, port, log };
}

const connect = (node: Node) =>
  new chat.ChatService(
    `127.0.0.1:${node.port}`,
    grpc.credentials.createInsecure(),
  ) as unknown as ChatClient;

const PAIRS = 10;
const MESSAGES = 6;
/** Time between two sends, ms. */
const SPACING_MS = 300;

/** What one fresh pair's stream did. */
interface Outcome {
  /** The subscribing node's warnings and its access-log line of the stream, when it failed. */
  log?: string[];
  /** ms from the call to its first message (the welcome), if it came. */
  firstMs?: number;
  /** The messages sent on the other node that the stream received live. */
  delivered: number;
  /** How the stream ended, if it did before the test cancelled it. */
  ended?: string;
}

/** Subscribes on `reader`'s node, sends on `writer`'s once live; never throws. */
async function firstSubscription(reader: ChatClient, writer: ChatClient): Promise<Outcome> {
  const room = uniqueRoom("first");
  const outcome: Outcome = { delivered: 0 };
  const started = performance.now();
  const stream = reader.SubscribeMessages({ room, user: "reader" });
  let wake = () => {};
  const changed = () => new Promise<void>((resolve) => (wake = resolve));
  let over = false;
  stream.on("data", (m: WireMessage) => {
    if (over) return;
    outcome.firstMs ??= Math.round(performance.now() - started);
    if (m.type === "CHAT") outcome.delivered++;
    wake();
  });
  stream.on("error", (err: grpc.ServiceError) => {
    if (over) return;
    outcome.ended = `${grpc.status[err.code]}: ${err.details}`;
    wake();
  });
  stream.on("end", () => {
    if (over) return;
    outcome.ended ??= "end";
    wake();
  });
  const waitFor = async (done: () => boolean, ms: number) => {
    const deadline = Date.now() + ms;
    while (!done() && outcome.ended === undefined && Date.now() < deadline) {
      await Promise.race([changed(), new Promise((r) => setTimeout(r, 100))]);
    }
  };
  try {
    await waitFor(() => outcome.firstMs !== undefined, 10_000);
    if (outcome.firstMs === undefined || outcome.ended !== undefined) return outcome;
    // Spread over 1.5 s: the reported streams ended about a second in.
    for (let i = 0; i < MESSAGES; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, SPACING_MS));
      await new Promise<void>((resolve, reject) =>
        writer.SendMessage({ room, user: "writer", content: `m${i}` }, (err) =>
          err === null ? resolve() : reject(err),
        ),
      );
    }
    await waitFor(() => outcome.delivered === MESSAGES, 5_000);
    // Still open a moment later: a stream that ends right after is no live feed either.
    await waitFor(() => false, 200);
    return outcome;
  } finally {
    over = true;
    stream.cancel();
  }
}

/** Starts two nodes, runs {@link firstSubscription} (subscribing on the second), stops them. */
async function freshPair(cluster: RedisCluster): Promise<Outcome> {
  const nodes = await Promise.all([0, 1].map(() => startNode(cluster.url)));
  const [writer, reader] = nodes.map(connect) as [ChatClient, ChatClient];
  try {
    const outcome = await firstSubscription(reader, writer);
    if (outcome.ended !== undefined || outcome.delivered !== MESSAGES) {
      outcome.log = (nodes[1] as Node).log
        .recent(50, 30)
        .filter((l) => l.level >= 40 || l.msg === "rpc")
        .map((l) => JSON.stringify(l));
    }
    return outcome;
  } finally {
    writer.close();
    reader.close();
    await Promise.all(nodes.map((n) => n.app.close()));
  }
}

describe.skipIf(missing !== undefined)(
  `the first subscription on fresh nodes on a Redis Cluster${missing === undefined ? "" : ` (skipped: ${missing})`}`,
  () => {
    let cluster: RedisCluster;
    beforeAll(async () => {
      cluster = await sharedRedisCluster();
    });
    afterAll(async () => {
      await cluster?.close();
    });

    test(`${PAIRS} fresh pairs of nodes: a plain gRPC client subscribes on one, sends on the other; every stream live, every message delivered`, async () => {
      const outcomes: Outcome[] = [];
      for (let pair = 0; pair < PAIRS; pair++) outcomes.push(await freshPair(cluster));
      console.log(
        `[first subscription] ${PAIRS} fresh pairs: first message after ${outcomes
          .map((o) => o.firstMs ?? "-")
          .join(", ")} ms; ended early: ${outcomes.filter((o) => o.ended !== undefined).length}`,
      );
      expect(outcomes).toEqual(
        outcomes.map(() => ({ firstMs: expect.any(Number), delivered: MESSAGES })),
      );
    }, 120_000);
  },
);
