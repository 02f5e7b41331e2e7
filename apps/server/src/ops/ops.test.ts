import fastify from "fastify";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../store/memory/message-store.js";
import type { Counters } from "../telemetry/telemetry.js";
import { Ops } from "./ops.js";

const CONFIG = {
  authJwtSecret: undefined,
  authJwksFile: undefined,
  publishRatePerS: 0,
  publishBurst: 1,
  maxStreamsPerIdentity: 0,
};

/** The process's counts of a server that has done nothing yet. */
const NO_COUNTS: Counters = {
  requests: () => 0,
  published: () => 0,
  delivered: () => 0,
  slowConsumerDisconnects: () => 0,
  subscribers: () => 0,
  openStreams: () => new Map(),
};

describe("Ops HTTP endpoints", () => {
  it("/readyz turns 503 the moment shutdown begins; /healthz stays 200", async () => {
    const ops = new Ops(CONFIG, pino({ level: "silent" }));
    const store = createMemoryStore();
    ops.attach({ store, ...NO_COUNTS });
    const app = fastify();
    await app.register(ops.plugin);
    expect((await app.inject("/readyz")).statusCode).toBe(200);
    await ops.lifecycle.beginShutdown(0);
    const ready = await app.inject("/readyz");
    expect([ready.statusCode, ready.body]).toEqual([503, "not ready: shutting down\n"]);
    expect((await app.inject("/healthz")).statusCode).toBe(200);
    await app.close();
    await store.close();
  });

  it("/readyz is 503 with the reason when the store does not answer", async () => {
    const ops = new Ops(CONFIG, pino({ level: "silent" }));
    const store = createMemoryStore();
    ops.attach({
      store: { ...store, ping: () => Promise.reject(new Error("connection refused")) },
      ...NO_COUNTS,
    });
    const app = fastify();
    await app.register(ops.plugin);
    const ready = await app.inject("/readyz");
    expect([ready.statusCode, ready.body]).toEqual([503, "not ready: store: connection refused\n"]);
    await app.close();
    await store.close();
  });
});
