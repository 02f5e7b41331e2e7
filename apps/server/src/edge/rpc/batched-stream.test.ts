import { create, toBinary } from "@bufbuild/protobuf";
import { createConnectRouter, createContextValues, type Interceptor } from "@connectrpc/connect";
import {
  encodeEnvelope,
  type UniversalHandler,
  type UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import { ChatService, SubscribeRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../config.js";
import { Rooms } from "../../domain/rooms.js";
import { Ops } from "../../ops/ops.js";
import { createRoutes } from "../../routes.js";
import { createMemoryStore } from "../../store/memory/message-store.js";
import { createMemoryPresence } from "../../store/memory/presence.js";
import { LogTail } from "../../telemetry/log-tail.js";
import { Telemetry } from "../../telemetry/telemetry.js";
import { isBatchedStream } from "./batched-stream.js";
import { createInterceptorChain } from "./interceptor-chain.js";
import { peerKey } from "./rpc-context.js";

// The contract between the interceptors and the SubscribeMessages writer, run through the
// server's own interceptor chain (the one app.ts builds: undecodable, metrics and access log,
// shutdown refusal, limits, validation, error mapper), not a stand-in.

const config = loadConfig([], { STORE: "memory" });

function setup(opts: { wrap?: boolean } = {}) {
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: "info" },
    { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const ops = new Ops(config, logger);
  const interceptors = createInterceptorChain(ops, config);
  const rooms = new Rooms(createMemoryStore(), createMemoryPresence(), config);
  const telemetry = new Telemetry({ requests: () => 0, ...rooms.counts });
  const router = createConnectRouter();
  let handed: AsyncIterable<unknown> | undefined;
  const { all } = createRoutes({
    rooms,
    telemetry,
    logger,
    logTail: new LogTail(),
    limits: config,
    chatHeartbeatS: 30,
    instanceId: "test",
    handlers: {
      // The production chain, then a probe innermost-but-one that records what the chain hands
      // the writer (the probe itself hands it on as it is).
      interceptors: [
        (next) => async (req) => {
          const res = await next(req);
          if (res.stream) handed = res.message;
          return res;
        },
        ...interceptors,
        // An interceptor that wraps the response stream in another iterable.
        ...(opts.wrap === true
          ? [
              ((next) => async (req) => {
                const res = await next(req);
                if (!res.stream) return res;
                const inner = res.message;
                return {
                  ...res,
                  message: (async function* () {
                    yield* inner;
                  })(),
                };
              }) satisfies Interceptor,
            ]
          : []),
      ],
      readMaxBytes: config.readMaxBytes,

      shutdownSignal: new AbortController().signal,
    },
  })(router);
  const handler = all.find(
    (h) => h.method === ChatService.method.subscribeMessages,
  ) as UniversalHandler;
  const send = (content: string) =>
    rooms.send({ room: "r", user: "bob", content, clientMessageId: "" });
  return { handler, send, ops, logs, handed: () => handed, close: () => telemetry.close() };
}

function request(signal: AbortSignal): UniversalServerRequest {
  return {
    httpVersion: "2.0",
    method: "POST",
    url: "http://localhost/chat.ChatService/SubscribeMessages",
    header: new Headers({ "content-type": "application/grpc" }),
    body: (async function* () {
      yield encodeEnvelope(
        0,
        toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { room: "r", user: "al" })),
      );
    })(),
    signal,
    contextValues: createContextValues().set(peerKey, "127.0.0.1:5000"),
  };
}

/** The number of envelopes in a chunk of response bytes. */
function envelopeCount(chunk: Uint8Array): number {
  const view = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  let n = 0;
  for (let at = 0; at < view.length; at += 5 + view.readUInt32BE(at + 1)) n++;
  return n;
}

describe("BatchedStream through the server's interceptor chain", () => {
  it("reaches the writer unwrapped, is written in batches, and every interceptor still sees it", async () => {
    const { handler, send, ops, logs, handed, close } = setup();
    const client = new AbortController();
    const res = await handler(request(client.signal));
    expect(res.status).toBe(200);
    // What the chain handed on is the subscription itself, still keeping the contract.
    const stream = handed();
    expect(stream).toBeDefined();
    expect(isBatchedStream(stream as AsyncIterable<unknown>)).toBe(true);

    const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    expect(envelopeCount((await body.next()).value as Uint8Array)).toBe(1); // the welcome
    await send("one");
    await send("two");
    await send("three");
    // The JOIN and three messages queued while the writer waited: one chunk (a wrapped stream
    // would be read one message at a time: four chunks).
    expect(envelopeCount((await body.next()).value as Uint8Array)).toBe(4);

    // The client goes away: the metrics and the access log hear of the end (Canceled), with
    // the five messages the writer handed to the transport.
    client.abort();
    await body.return?.();
    const cell = ops.metrics.cell("chat.ChatService", "SubscribeMessages", "server_stream", "grpc");
    expect(cell.sent).toBe(5);
    expect(cell.handled.get("Canceled")).toBe(1);
    const line = logs.find((l) => l.msg === "rpc");
    expect(line).toMatchObject({
      method: "/chat.ChatService/SubscribeMessages",
      code: "Canceled",
      peer: "127.0.0.1:5000",
    });
    close();
  });

  it("a stream an interceptor wraps loses the contract and is read one message at a time", async () => {
    const { handler, send, handed, close } = setup({ wrap: true });
    const client = new AbortController();
    const res = await handler(request(client.signal));
    expect(isBatchedStream(handed() as AsyncIterable<unknown>)).toBe(false);
    const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    expect(envelopeCount((await body.next()).value as Uint8Array)).toBe(1); // the welcome
    await send("one");
    await send("two");
    // Everything still arrives, in order, but one envelope per chunk.
    for (let i = 0; i < 3; i++) {
      expect(envelopeCount((await body.next()).value as Uint8Array)).toBe(1);
    }
    client.abort();
    await body.return?.();
    close();
  });
});
