// SIGTERM as an orchestrator sends it, with clients attached: health Watch turns NOT_SERVING,
// HTTP/2 connections receive GOAWAY, each of 100 open subscriptions (gRPC, Connect and gRPC-Web)
// ends with Unavailable naming the offset to resume from, and the process exits 0 in time.
import http2 from "node:http2";
import { createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import type { Message } from "@switchboard/proto/gen/chat/chat_pb";
import {
  Health,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Status,
} from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerProcess } from "./harness.js";
import { ConnectError, chatClient, codeName, StreamReader, uniqueRoom, within } from "./support.js";

const SHUTDOWN_TIMEOUT_MS = 8_000;
const STREAMS = 100;

describe("SIGTERM", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start({
      store: "memory",
      env: { SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it(`ends ${STREAMS} open streams with Unavailable and the resume offset, and exits 0 in time`, async () => {
    const transports = [
      { protocol: "grpc", httpVersion: "2", useBinaryFormat: true },
      { protocol: "connect", httpVersion: "2", useBinaryFormat: false },
      { protocol: "grpcweb", httpVersion: "1.1", useBinaryFormat: true },
    ] as const;
    const clients = transports.map((tc) => chatClient(server.baseUrl, tc));
    const sender = chatClient(server.baseUrl);
    const readers: StreamReader<Message>[] = [];
    for (let i = 0; i < STREAMS; i++) {
      // One room per stream: offset 1 is a message sent before, offset 2 the subscriber's JOIN.
      const room = uniqueRoom(`shutdown-${i}`);
      await sender.sendMessage({ room, user: "sender", content: "before shutdown" });
      const client = clients[i % clients.length] as (typeof clients)[number];
      readers.push(
        new StreamReader((signal) =>
          client.subscribeMessages({ room, user: `s${i}`, sinceOffset: 0n }, { signal }),
        ),
      );
    }
    await within(
      Promise.all(readers.map((r) => r.waitFor((m) => m.offset === 2n, 20_000))),
      30_000,
      "every subscription to reach its JOIN",
    );

    const health = createClient(
      Health,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc" }),
    );
    const watch = new StreamReader<HealthCheckResponse>((signal) =>
      health.watch({ service: "" }, { signal }),
    );
    expect((await watch.count(1))[0]?.status).toBe(Status.SERVING);

    // A plain HTTP/2 connection, to see the GOAWAY frame itself.
    const session = http2.connect(server.baseUrl);
    const goaway = new Promise<void>((resolve) => session.once("goaway", () => resolve()));
    session.on("error", () => {});
    await within(
      new Promise<void>((resolve, reject) => {
        const req = session.request({ ":path": "/healthz" });
        req.on("response", () => resolve());
        req.on("error", reject);
        req.resume();
        req.end();
      }),
      5_000,
      "the answer to /healthz over HTTP/2",
    );

    const started = performance.now();
    const exit = await server.kill("SIGTERM", SHUTDOWN_TIMEOUT_MS + 5_000);
    const tookMs = performance.now() - started;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(tookMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS);

    const errors = await Promise.all(readers.map((r) => r.ended));
    const outcomes = errors.map((e) =>
      e === undefined ? "clean end" : `${codeName(e.code)}: ${e.rawMessage}`,
    );
    expect(outcomes).toEqual(
      Array.from(
        { length: STREAMS },
        () => "Unavailable: server shutting down; resume from offset 2",
      ),
    );

    await watch.ended;
    expect(watch.received.map((r) => r.status)).toEqual([Status.SERVING, Status.NOT_SERVING]);
    await within(goaway, 5_000, "GOAWAY on the HTTP/2 connection");
    session.destroy();
  });

  it("lets in-flight unary calls finish: each send is answered OK and stored, or refused with Unavailable", async () => {
    const durable = await ServerProcess.start({
      store: "sqlite",
      env: { SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) },
    });
    try {
      const client = chatClient(durable.baseUrl, {
        protocol: "grpc",
        httpVersion: "2",
        useBinaryFormat: true,
      });
      const room = uniqueRoom("in-flight");
      await client.sendMessage({ room, user: "w", content: "warm-up" });
      // Load: 20 sends in flight at all times; SIGTERM once 100 have been answered.
      type Outcome = { ok: true; i: number } | { ok: false; error: ConnectError; i: number };
      const outcomes: Outcome[] = [];
      let next = 0;
      let stop = false;
      let answered = 0;
      let signalled: (() => void) | undefined;
      const hundred = new Promise<void>((resolve) => {
        signalled = resolve;
      });
      const worker = async () => {
        while (!stop) {
          const i = next++;
          try {
            await client.sendMessage({
              room,
              user: "w",
              content: `m${i}`,
              clientMessageId: `m${i}`,
            });
            outcomes.push({ ok: true, i });
            if (++answered === 100) signalled?.();
          } catch (err) {
            outcomes.push({ ok: false, error: ConnectError.from(err), i });
            stop = true;
          }
        }
      };
      const workers = Array.from({ length: 20 }, worker);
      await within(hundred, 20_000, "100 sends answered");
      const exit = await durable.kill("SIGTERM", SHUTDOWN_TIMEOUT_MS + 5_000);
      expect(exit, durable.tail(40)).toEqual({ code: 0, signal: null });
      stop = true;
      await Promise.all(workers);
      expect(answered).toBeGreaterThanOrEqual(100);
      const failures = outcomes
        .filter((o) => !o.ok)
        .map((o) => (o.ok ? "" : codeName(o.error.code)));
      expect(new Set(failures)).toEqual(new Set(failures.length > 0 ? ["Unavailable"] : []));

      // After a restart: every answered send is stored, and no refused one is (a stored but
      // unanswered send would be an in-flight call cut off).
      await durable.restart();
      const reader = chatClient(durable.baseUrl);
      const stored = new Set<string>();
      for (let after = 0n; ; ) {
        const page = await reader.getHistory({ room, afterOffset: after, limit: 500 });
        for (const m of page.messages) stored.add(m.clientMessageId);
        if (!page.hasMore) break;
        after = page.messages.at(-1)?.offset ?? after;
      }
      for (const o of outcomes) expect(stored.has(`m${o.i}`), `m${o.i}`).toBe(o.ok);
    } finally {
      await durable.close();
    }
  });
});
