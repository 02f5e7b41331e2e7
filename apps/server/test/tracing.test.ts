// OpenTelemetry tracing seen from outside: real servers export to a real OTLP/HTTP receiver
// (otlp-receiver.ts) started here. A call with a known W3C traceparent yields the server span
// (that trace, that parent), the store's spans as its children, the access log's trace_id, and
// on two nodes sharing a real redis-server the delivery span on the other node, linked to the
// append span of the node that stored the message. Without an endpoint, nothing is traced.
import { randomBytes } from "node:crypto";
import { context, propagation, ROOT_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { OtlpReceiver, type ReceivedSpan, tracingEnv } from "./otlp-receiver.js";
import { RedisServer } from "./redis-server.js";
import { Code, chatClient, connectErrorOf, StreamReader, uniqueRoom, within } from "./support.js";
import { skipWithout } from "./tools.js";
import { clientPerWorker } from "./workers.js";

const SERVER = 2;
const CONSUMER = 5;
const INTERNAL = 1;

/** A fresh caller's trace context: its ids and the traceparent header that carries them. */
function callerContext() {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

const PROTOCOLS = [
  { protocol: "connect", httpVersion: "1.1", useBinaryFormat: false, system: "connect_rpc" },
  { protocol: "grpc", httpVersion: "2", useBinaryFormat: true, system: "grpc" },
  { protocol: "grpcweb", httpVersion: "1.1", useBinaryFormat: true, system: "grpc" },
] as const;

const find = (spans: readonly ReceivedSpan[], p: (s: ReceivedSpan) => boolean) =>
  spans.find(p) as ReceivedSpan;

describe("tracing on one node (SQLite)", () => {
  let receiver: OtlpReceiver;
  let server: ServerProcess;

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    server = await startServer({ env: tracingEnv(receiver, "switchboard-test") });
  });
  afterAll(async () => {
    await server?.close();
    await receiver?.close();
  });

  test.each(PROTOCOLS.map((p) => [p.protocol, p] as const))(
    "%s: SendMessage's server span continues the caller's trace, with the store's append as its child and the fan-out linked to that",
    async (_name, tc) => {
      const room = uniqueRoom(`trace-${tc.protocol}`);
      const client = chatClient(server.baseUrl, tc);
      const reader = new StreamReader(
        (signal) => client.subscribeMessages({ room, user: "sub", watchOnly: true }, { signal }),
        "the subscription",
      );
      await reader.waitFor(() => true, 5_000, 0, "the welcome");
      const caller = callerContext();
      const sent = await client.sendMessage(
        { room, user: "ann", content: "traced" },
        { headers: { traceparent: caller.traceparent, tracestate: "vendor=opaque" } },
      );
      await reader.waitFor((m) => m.content === "traced", 5_000, 0, "the message");

      const spans = await receiver.waitFor(
        (all) =>
          all.some((s) => s.traceId === caller.traceId && s.name === "room.deliver") &&
          all.some((s) => s.traceId === caller.traceId && s.name === "store.append"),
        `the spans of trace ${caller.traceId}`,
      );
      const rpc = find(
        spans,
        (s) => s.traceId === caller.traceId && s.name === "chat.ChatService/SendMessage",
      );
      expect(rpc).toMatchObject({
        service: "switchboard-test",
        kind: SERVER,
        parentSpanId: caller.spanId,
        traceState: "vendor=opaque",
        status: { code: 0 },
      });
      expect(rpc.attributes).toMatchObject({
        "rpc.system": tc.system,
        "rpc.service": "chat.ChatService",
        "rpc.method": "SendMessage",
      });
      if (tc.system === "grpc") expect(rpc.attributes["rpc.grpc.status_code"]).toBe(0);
      else expect(rpc.attributes["rpc.connect_rpc.error_code"]).toBeUndefined();

      const append = find(spans, (s) => s.traceId === caller.traceId && s.name === "store.append");
      expect(append).toMatchObject({ kind: INTERNAL, parentSpanId: rpc.spanId });
      expect(append.attributes).toMatchObject({
        "messaging.destination.name": room,
        "switchboard.offset": Number(sent.offset),
        "switchboard.duplicate": false,
      });

      const deliver = find(spans, (s) => s.traceId === caller.traceId && s.name === "room.deliver");
      expect(deliver).toMatchObject({ kind: CONSUMER, parentSpanId: append.spanId });
      expect(deliver.links).toEqual([{ traceId: caller.traceId, spanId: append.spanId }]);
      expect(deliver.attributes).toMatchObject({
        "messaging.destination.name": room,
        "switchboard.offset": Number(sent.offset),
        "switchboard.deliveries": 1,
      });

      // The access log line of the call names the trace.
      const line = await server.waitForRecord(
        (r) =>
          r.msg === "rpc" &&
          r.method === "/chat.ChatService/SendMessage" &&
          r.trace_id === caller.traceId,
        5_000,
        "the access log line with the caller's trace_id",
      );
      expect(line.code).toBe("OK");
      reader.cancel();
      await reader.ended;
    },
  );

  test.each(PROTOCOLS.map((p) => [p.protocol, p] as const))(
    "%s: a refused call's span carries its code; a caller's mistake leaves the status unset",
    async (_name, tc) => {
      const client = chatClient(server.baseUrl, tc);
      const caller = callerContext();
      const err = await connectErrorOf(
        client.sendMessage(
          { room: "not a room!", user: "ann", content: "x" },
          { headers: { traceparent: caller.traceparent } },
        ),
      );
      expect(err.code).toBe(Code.InvalidArgument);
      const spans = await receiver.waitFor(
        (all) => all.some((s) => s.traceId === caller.traceId),
        "the refused call's span",
      );
      const rpc = find(spans, (s) => s.traceId === caller.traceId);
      expect(rpc.name).toBe("chat.ChatService/SendMessage");
      expect(rpc.status.code).toBe(0);
      expect(rpc.attributes["error.type"]).toBe("invalid_argument");
      if (tc.system === "grpc") expect(rpc.attributes["rpc.grpc.status_code"]).toBe(3);
      else expect(rpc.attributes["rpc.connect_rpc.error_code"]).toBe("invalid_argument");
      // No store work for a refused call.
      expect(spans.filter((s) => s.traceId === caller.traceId)).toHaveLength(1);
    },
  );

  test("GetHistory's history read is a child of its server span; a stream's span ends with it", async () => {
    const room = uniqueRoom("trace-history");
    const client = chatClient(server.baseUrl, PROTOCOLS[1]);
    await client.sendMessage({ room, user: "ann", content: "one" });
    const history = callerContext();
    await client.getHistory({ room, limit: 10 }, { headers: { traceparent: history.traceparent } });
    const stream = callerContext();
    const reader = new StreamReader(
      (signal) =>
        client.subscribeMessages(
          { room, user: "sub", watchOnly: true },
          { signal, headers: { traceparent: stream.traceparent } },
        ),
      "the subscription",
    );
    await reader.waitFor(() => true, 5_000, 0, "the welcome");
    reader.cancel();
    await reader.ended;

    const spans = await receiver.waitFor(
      (all) =>
        all.some((s) => s.traceId === history.traceId && s.name === "store.read") &&
        all.some((s) => s.traceId === stream.traceId && s.kind === SERVER),
      "GetHistory's and SubscribeMessages' spans",
    );
    const rpc = find(spans, (s) => s.traceId === history.traceId && s.kind === SERVER);
    expect(rpc.name).toBe("chat.ChatService/GetHistory");
    const read = find(spans, (s) => s.traceId === history.traceId && s.name === "store.read");
    expect(read.parentSpanId).toBe(rpc.spanId);
    expect(read.attributes["switchboard.messages"]).toBe(1);
    const sub = find(spans, (s) => s.traceId === stream.traceId && s.kind === SERVER);
    expect(sub).toMatchObject({
      name: "chat.ChatService/SubscribeMessages",
      parentSpanId: stream.spanId,
    });
    // The client went away: Canceled, a caller's doing (status unset).
    expect(sub.attributes["rpc.grpc.status_code"]).toBe(Code.Canceled);
    expect(sub.status.code).toBe(0);
  });

  test("@switchboard/client sends the application's active trace context: the server span is its child", async () => {
    // The application's OpenTelemetry setup, as an SDK would make it: a context manager and the
    // W3C propagator (no exporter needed on this side).
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    try {
      const caller = callerContext();
      const active = trace.setSpanContext(ROOT_CONTEXT, {
        traceId: caller.traceId,
        spanId: caller.spanId,
        traceFlags: TraceFlags.SAMPLED,
      });
      const client = chatClient(server.baseUrl, PROTOCOLS[1]);
      await context.with(active, () =>
        client.sendMessage({ room: uniqueRoom("trace-client"), user: "ann", content: "hi" }),
      );
      const spans = await receiver.waitFor(
        (all) => all.some((s) => s.traceId === caller.traceId && s.kind === SERVER),
        "the server span of the client's trace",
      );
      expect(find(spans, (s) => s.traceId === caller.traceId && s.kind === SERVER)).toMatchObject({
        name: "chat.ChatService/SendMessage",
        parentSpanId: caller.spanId,
      });
    } finally {
      context.disable();
      propagation.disable();
    }
  });

  test("a server-side failure (the deadline passed) sets the span's status to Error, as the RPC conventions ask", async () => {
    const caller = callerContext();
    const reader = new StreamReader(
      (signal) =>
        chatClient(server.baseUrl, PROTOCOLS[1]).subscribeMessages(
          { room: uniqueRoom("trace-deadline"), user: "sub", watchOnly: true },
          // The deadline in the header only: the server ends the call, the client does not cancel.
          { signal, headers: { traceparent: caller.traceparent, "grpc-timeout": "300m" } },
        ),
      "the subscription",
    );
    expect((await reader.ended)?.code).toBe(Code.DeadlineExceeded);
    const spans = await receiver.waitFor(
      (all) => all.some((s) => s.traceId === caller.traceId && s.kind === SERVER),
      "the subscription's span",
    );
    const rpc = find(spans, (s) => s.traceId === caller.traceId && s.kind === SERVER);
    expect(rpc.attributes["rpc.grpc.status_code"]).toBe(Code.DeadlineExceeded);
    expect(rpc.status.code).toBe(2);
  });

  test("a request refused before connect-es (an unsupported content type) is no call: no span, deliberately", async () => {
    const refused = callerContext();
    const res = await fetch(`${server.baseUrl}/chat.ChatService/SendMessage`, {
      method: "POST",
      headers: { "content-type": "text/plain", traceparent: refused.traceparent },
      body: "hello",
    });
    expect(res.status).toBe(415);
    // A traced call after it: once its span is in, the refused request's would have been too.
    const after = callerContext();
    await chatClient(server.baseUrl).getHistory(
      { room: uniqueRoom("after-refusal"), limit: 1 },
      { headers: { traceparent: after.traceparent } },
    );
    const spans = await receiver.waitFor(
      (all) => all.some((s) => s.traceId === after.traceId && s.kind === SERVER),
      "the later call's span",
    );
    expect(spans.filter((s) => s.traceId === refused.traceId)).toEqual([]);
  });

  test("a call without a traceparent starts a trace of its own", async () => {
    const room = uniqueRoom("trace-root");
    const client = chatClient(server.baseUrl);
    await client.sendMessage({ room, user: "ann", content: "untraced caller" });
    const line = await server.waitForRecord(
      (r) => r.msg === "rpc" && r.method === "/chat.ChatService/SendMessage" && r.code === "OK",
      5_000,
    );
    const spans = await receiver.waitFor(
      (all) =>
        all.some(
          (s) =>
            s.name === "store.append" &&
            s.attributes["messaging.destination.name"] === room &&
            all.some((r) => r.spanId === s.parentSpanId && r.parentSpanId === ""),
        ),
      "a root server span with its append",
    );
    const append = find(
      spans,
      (s) => s.name === "store.append" && s.attributes["messaging.destination.name"] === room,
    );
    expect(typeof line.trace_id).toBe("string");
    expect(append.traceId).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe("tracing at shutdown", () => {
  test("the spans still buffered are exported when the server stops (SIGTERM)", async () => {
    const receiver = await OtlpReceiver.start();
    // A batch delay far beyond the test: only the shutdown's flush can send the span.
    const server = await startServer({
      env: { ...tracingEnv(receiver, "flush"), OTEL_BSP_SCHEDULE_DELAY: "600000" },
    });
    try {
      const caller = callerContext();
      await chatClient(server.baseUrl).getHistory(
        { room: uniqueRoom("flush"), limit: 1 },
        { headers: { traceparent: caller.traceparent } },
      );
      expect(receiver.spans.filter((s) => s.traceId === caller.traceId)).toEqual([]);
      expect((await server.kill("SIGTERM")).code).toBe(0);
      const spans = await receiver.waitFor(
        (all) => all.some((s) => s.traceId === caller.traceId && s.kind === SERVER),
        "the span flushed at shutdown",
        2_000,
      );
      expect(find(spans, (s) => s.traceId === caller.traceId && s.kind === SERVER).name).toBe(
        "chat.ChatService/GetHistory",
      );
    } finally {
      await server.close();
      await receiver.close();
    }
  });
});

describe("tracing off", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  test("no OTLP endpoint: the access log has no trace_id, whatever the caller sends", async () => {
    const room = uniqueRoom("untraced");
    const caller = callerContext();
    await chatClient(server.baseUrl).sendMessage(
      { room, user: "ann", content: "x" },
      { headers: { traceparent: caller.traceparent } },
    );
    const line = await server.waitForRecord(
      (r) => r.msg === "rpc" && r.method === "/chat.ChatService/SendMessage",
      5_000,
    );
    expect(line.trace_id).toBeUndefined();
  });
});

describe.skipIf(skipWithout("redis-server"))("tracing across two nodes on one Redis", () => {
  let redis: RedisServer;
  let receiver: OtlpReceiver;
  let a: ServerProcess;
  let b: ServerProcess;

  beforeAll(async () => {
    redis = await RedisServer.start();
    receiver = await OtlpReceiver.start();
    [a, b] = await Promise.all([
      startServer({ env: { STORE: redis.url, ...tracingEnv(receiver, "node-a") } }),
      startServer({ env: { STORE: redis.url, ...tracingEnv(receiver, "node-b") } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await receiver?.close();
    await redis?.close();
  });

  test("a message sent on node A and delivered on node B: B's delivery span links to A's append span", async () => {
    const room = uniqueRoom("trace-nodes");
    const onB = chatClient(b.baseUrl, PROTOCOLS[1]);
    const reader = new StreamReader(
      (signal) => onB.subscribeMessages({ room, user: "bea", watchOnly: true }, { signal }),
      "B's subscription",
    );
    await reader.waitFor(() => true, 5_000, 0, "the welcome on B");
    const caller = callerContext();
    await within(
      chatClient(a.baseUrl, PROTOCOLS[0]).sendMessage(
        { room, user: "ann", content: "across" },
        { headers: { traceparent: caller.traceparent } },
      ),
      5_000,
      "the send on A",
    );
    await reader.waitFor((m) => m.content === "across", 5_000, 0, "the message on B");

    const spans = await receiver.waitFor(
      (all) =>
        all.some(
          (s) =>
            s.service === "node-b" && s.traceId === caller.traceId && s.name === "room.deliver",
        ) &&
        all.some(
          (s) => s.service === "node-a" && s.traceId === caller.traceId && s.kind === SERVER,
        ),
      "node B's delivery span and node A's server span",
    );
    const append = find(
      spans,
      (s) => s.service === "node-a" && s.traceId === caller.traceId && s.name === "store.append",
    );
    const rpc = find(spans, (s) => s.service === "node-a" && s.spanId === append.parentSpanId);
    expect(rpc).toMatchObject({
      name: "chat.ChatService/SendMessage",
      parentSpanId: caller.spanId,
    });
    const deliver = find(
      spans,
      (s) => s.service === "node-b" && s.traceId === caller.traceId && s.name === "room.deliver",
    );
    expect(deliver.kind).toBe(CONSUMER);
    expect(deliver.links).toEqual([{ traceId: caller.traceId, spanId: append.spanId }]);
    expect(deliver.parentSpanId).toBe(append.spanId);
    expect(deliver.attributes["switchboard.deliveries"]).toBe(1);
    reader.cancel();
    await reader.ended;
  });
});

describe("tracing across the workers of WORKERS=2 on SQLite", () => {
  let receiver: OtlpReceiver;
  let server: ServerProcess;

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    server = await startServer({ env: { WORKERS: "2", ...tracingEnv(receiver, "workers") } });
    await server.waitForRecord((r) => r.msg === "all workers listening", 20_000);
  });
  afterAll(async () => {
    await server?.close();
    await receiver?.close();
  });

  test("a message sent through one worker and delivered by the other: the delivery span links to the append span (through the primary's wake-up)", async () => {
    const [one, two] = await clientPerWorker(server, 2);
    if (one === undefined || two === undefined) throw new Error("two workers expected");
    const room = uniqueRoom("trace-workers");
    const reader = new StreamReader(
      (signal) => two.client.subscribeMessages({ room, user: "bea", watchOnly: true }, { signal }),
      `the subscription on ${two.instance}`,
    );
    await reader.waitFor(() => true, 5_000, 0, "the welcome");
    const caller = callerContext();
    await one.client.sendMessage(
      { room, user: "ann", content: "across workers" },
      { headers: { traceparent: caller.traceparent } },
    );
    await reader.waitFor((m) => m.content === "across workers", 5_000, 0, "the message");
    const spans = await receiver.waitFor(
      (all) =>
        all.some((s) => s.traceId === caller.traceId && s.name === "room.deliver") &&
        all.some((s) => s.traceId === caller.traceId && s.name === "store.append"),
      "the append and delivery spans",
    );
    const append = find(spans, (s) => s.traceId === caller.traceId && s.name === "store.append");
    const deliver = find(spans, (s) => s.traceId === caller.traceId && s.name === "room.deliver");
    expect(append.pid).toBeDefined();
    expect(deliver.pid).toBeDefined();
    expect(deliver.pid).not.toBe(append.pid);
    expect(deliver.links).toEqual([{ traceId: caller.traceId, spanId: append.spanId }]);
    reader.cancel();
    await reader.ended;
  });
});
