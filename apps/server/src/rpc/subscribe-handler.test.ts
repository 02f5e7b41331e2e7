import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import {
  encodeEnvelope,
  type UniversalHandler,
  type UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import {
  ChatService,
  MessageSchema,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { Rooms } from "../domain/rooms.js";
import { observeStream } from "../ops/stream-observer.js";
import { createRoutes } from "../routes.js";
import { createMemoryStore } from "../store/memory/message-store.js";
import { createMemoryPresence } from "../store/memory/presence.js";
import { LogTail } from "../telemetry/log-tail.js";
import { Telemetry } from "../telemetry/telemetry.js";

const URL_PATH = "http://localhost/chat.ChatService/SubscribeMessages";

/** A router with the real ChatService and SubscribeMessages on its batched writer. */
function setup(opts: { interceptors?: Interceptor[]; queueLimit?: number } = {}) {
  const rooms = new Rooms(createMemoryStore(), createMemoryPresence(), {
    maxContentBytes: 4096,
    maxUserBytes: 128,
    subscriberQueueLimit: opts.queueLimit ?? 1024,
  });
  const telemetry = new Telemetry({ requests: () => 0, ...rooms.counts });
  const router = createConnectRouter();
  createRoutes({
    rooms,
    telemetry,
    logger: pino({ level: "silent" }),
    logTail: new LogTail(),
    limits: { maxContentBytes: 4096, maxUserBytes: 128, subscriberQueueLimit: 1024 },
    chatHeartbeatS: 30,
    instanceId: "test",
    handlers: {
      interceptors: opts.interceptors ?? [],
      readMaxBytes: 1 << 20,
      maxTimeoutMs: 0,
      shutdownSignal: new AbortController().signal,
    },
  })(router);
  const handler = router.handlers.find(
    (h) => h.method === ChatService.method.subscribeMessages,
  ) as UniversalHandler;
  const send = (content: string) =>
    rooms.send({ room: "r", user: "bob", content, clientMessageId: "" });
  return { rooms, handler, send, close: () => telemetry.close() };
}

function request(
  headers: Record<string, string>,
  body: Uint8Array,
  signal = new AbortController().signal,
): UniversalServerRequest {
  return {
    httpVersion: "2.0",
    method: "POST",
    url: URL_PATH,
    header: new Headers(headers),
    body: (async function* () {
      yield body;
    })(),
    signal,
    contextValues: createContextValues(),
  };
}

const subscribeBody = (room = "r", user = "alice") =>
  encodeEnvelope(
    0,
    toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { room, user })),
  );

/** Splits a chunk of response bytes into its envelopes. */
function envelopes(chunk: Uint8Array): Array<{ flags: number; data: Uint8Array }> {
  const out: Array<{ flags: number; data: Uint8Array }> = [];
  const view = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  for (let at = 0; at < view.length; ) {
    const length = view.readUInt32BE(at + 1);
    out.push({ flags: view[at] as number, data: view.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

const contents = (chunk: Uint8Array) =>
  envelopes(chunk).map((e) => fromBinary(MessageSchema, e.data).content);

describe("the SubscribeMessages writer", () => {
  it("writes the messages queued while it waited as one chunk, in order", async () => {
    const { handler, send, close } = setup();
    const res = await handler(request({ "content-type": "application/grpc" }, subscribeBody()));
    expect(res.status).toBe(200);
    expect(res.header?.get("content-type")).toBe("application/grpc+proto");
    const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    const first = await body.next();
    expect(contents(first.value as Uint8Array)).toEqual(["Welcome to room r, alice!"]);
    // The JOIN, then three sends, all queued before the writer asks again: one chunk.
    await send("one");
    await send("two");
    await send("three");
    const second = await body.next();
    expect(contents(second.value as Uint8Array)).toEqual(["alice joined", "one", "two", "three"]);
    await body.return?.();
    close();
  });

  it("serializes a published message once: every subscriber is handed the same bytes", async () => {
    const { handler, send, close } = setup();
    const open = async (user: string) => {
      const res = await handler(
        request({ "content-type": "application/grpc" }, subscribeBody("r", user)),
      );
      const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      await body.next(); // the welcome
      return body;
    };
    const a = await open("alice");
    const b = await open("alice");
    await send("shared");
    const [ca, cb] = await Promise.all([a.next(), b.next()]);
    // The JOIN and "shared" in one chunk each, or "shared" alone: compare the last envelope.
    const last = (c: IteratorResult<Uint8Array>) => {
      const all = envelopes(c.value as Uint8Array);
      return all[all.length - 1]?.data;
    };
    expect(fromBinary(MessageSchema, last(ca) as Uint8Array).content).toBe("shared");
    expect(last(ca)).toEqual(last(cb));
    await a.return?.();
    await b.return?.();
    close();
  });

  it("ends a subscriber that stops reading with RESOURCE_EXHAUSTED in the gRPC trailers", async () => {
    const { handler, send, close } = setup({ queueLimit: 4 });
    const res = await handler(request({ "content-type": "application/grpc" }, subscribeBody()));
    const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    await body.next(); // the welcome; then the reader stalls while 10 messages are published
    for (let i = 0; i < 10; i++) await send(`m${i}`);
    const end = await body.next();
    expect(end.done).toBe(true);
    expect(res.trailer?.get("grpc-status")).toBe(String(Code.ResourceExhausted));
    expect(decodeURIComponent(res.trailer?.get("grpc-message") ?? "")).toMatch(
      /slow consumer; resume from offset \d+/,
    );
    close();
  });

  it("runs the router's interceptors: a refusal ends the stream with its code (Connect end-stream)", async () => {
    const refuse: Interceptor = (next) => async (req) => {
      if (req.header.get("authorization") === null) {
        throw new ConnectError("missing bearer token", Code.Unauthenticated);
      }
      return next(req);
    };
    const { handler, close } = setup({ interceptors: [refuse] });
    const res = await handler(
      request({ "content-type": "application/connect+proto" }, subscribeBody()),
    );
    const chunks: Uint8Array[] = [];
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) chunks.push(chunk);
    const [end] = envelopes(Buffer.concat(chunks));
    expect(end?.flags).toBe(0b10);
    expect(JSON.parse(Buffer.from(end?.data ?? []).toString())).toMatchObject({
      error: { code: "unauthenticated", message: "missing bearer token" },
    });
    close();
  });

  it("reports the messages it writes and its end to interceptors that observe the stream", async () => {
    const seen = { messages: 0, end: "not yet" as unknown };
    const observe: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (!res.stream) return res;
      return {
        ...res,
        message: observeStream(res.message, {
          onMessages: (n) => {
            seen.messages += n;
          },
          onEnd: (err) => {
            seen.end = err === undefined ? "ok" : ConnectError.from(err).code;
          },
        }),
      };
    };
    const { handler, send, close } = setup({ interceptors: [observe] });
    const controller = new AbortController();
    const res = await handler(
      request({ "content-type": "application/grpc-web+proto" }, subscribeBody(), controller.signal),
    );
    const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    let got = contents((await body.next()).value as Uint8Array).length;
    await send("x");
    while (got < 3) got += contents((await body.next()).value as Uint8Array).length;
    expect(seen.messages).toBe(3); // welcome, JOIN, x
    controller.abort(new ConnectError("the client went away", Code.Canceled));
    const trailer = await body.next();
    // gRPC-Web ends with a trailer envelope.
    const [end] = envelopes(trailer.value as Uint8Array);
    expect(end?.flags).toBe(0x80);
    expect(Buffer.from(end?.data ?? []).toString()).toContain(`grpc-status: ${Code.Canceled}`);
    expect(seen.end).toBe(Code.Canceled);
    close();
  });

  it("reports a consumer that stops reading early as Canceled, not as a completed stream", async () => {
    let end: unknown = "not yet";
    const observe: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (!res.stream) return res;
      return {
        ...res,
        message: observeStream(res.message, {
          onEnd: (err) => {
            end = err === undefined ? "ok" : ConnectError.from(err).code;
          },
        }),
      };
    };
    const { handler, close } = setup({ interceptors: [observe] });
    const res = await handler(request({ "content-type": "application/grpc" }, subscribeBody()));
    const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    await body.next();
    await body.return?.();
    expect(end).toBe(Code.Canceled);
    close();
  });

  it("leaves compressed requests to connect-es's own handler", async () => {
    const { handler, close } = setup();
    const payload = gzipSync(
      toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { room: "r", user: "alice" }),
      ),
    );
    const compressed = new Uint8Array(5 + payload.length);
    compressed[0] = 1;
    new DataView(compressed.buffer).setUint32(1, payload.length);
    compressed.set(payload, 5);
    const res = await handler(
      request({ "content-type": "application/grpc", "grpc-encoding": "gzip" }, compressed),
    );
    // The router accepts no compression, so connect-es's handler refuses the gzip body with
    // Unimplemented; the writer would have misread it as an uncompressed message.
    const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    while ((await body.next()).done !== true) {}
    expect(res.trailer?.get("grpc-status") ?? res.header?.get("grpc-status")).toBe(
      String(Code.Unimplemented),
    );
    await body.return?.();
    close();
  });
});
