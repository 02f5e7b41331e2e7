import http2 from "node:http2";
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
import { describe, expect, it, vi } from "vitest";
import { Rooms } from "../../domain/rooms.js";
import { createRoutes } from "../../routes.js";
import { createMemoryStore } from "../../store/memory/message-store.js";
import { createMemoryPresence } from "../../store/memory/presence.js";
import { LogTail } from "../../telemetry/log-tail.js";
import { Telemetry } from "../../telemetry/telemetry.js";
import { type Lane, listenOnLane } from "./lane-test-server.js";
import type { StreamServedHandler } from "./lean-stream.js";
import { observeStream } from "./stream-observer.js";
import { envelopesEncoded } from "./subscribe-handler.js";
import type { NodeServedHandler } from "./unary-handler.js";

type LeanHandler = NodeServedHandler & StreamServedHandler;

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
  const { all } = createRoutes({
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

      shutdownSignal: new AbortController().signal,
    },
  })(router);
  const handler = all.find(
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
    const before = envelopesEncoded();
    await send("shared");
    const [ca, cb] = await Promise.all([a.next(), b.next()]);
    // Each published message serialized once, however many subscribers got it: a layer that
    // copied the Message on its way from the fan-out to the writers would cost one per subscriber.
    const offsets = new Set(
      [ca, cb].flatMap((c) =>
        envelopes(c.value as Uint8Array).map((e) => fromBinary(MessageSchema, e.data).offset),
      ),
    );
    expect(envelopesEncoded() - before).toBe(offsets.size);
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

  it("refuses an envelope flagged compressed in a request without an encoding, as connect-es does", async () => {
    const { handler, close } = setup();
    const flagged = subscribeBody();
    flagged[0] = 1;
    const res = await handler(request({ "content-type": "application/grpc" }, flagged));
    // The body ends at once with no message: the request was not read as an uncompressed one
    // (a subscription would have begun with its welcome and stayed open).
    const body = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    let timer: NodeJS.Timeout | undefined;
    const first = await Promise.race([
      body.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("the stream did not end within 2 s")), 2_000);
      }),
    ]).finally(() => clearTimeout(timer));
    await body.return?.();
    expect(first.done).toBe(true);
    expect(res.trailer?.get("grpc-status")).toBe(String(Code.Internal));
    expect(decodeURIComponent(res.trailer?.get("grpc-message") ?? "")).toBe(
      "received compressed envelope, but do not know how to decompress",
    );
    close();
  });
});

/** The messages of the complete envelopes in `bytes` (a chunk may end inside one). */
function completeContents(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; bytes.length - at >= 5; ) {
    const end = at + 5 + bytes.readUInt32BE(at + 1);
    if (end > bytes.length) break;
    out.push(fromBinary(MessageSchema, bytes.subarray(at + 5, end)).content);
    at = end;
  }
  return out;
}

/**
 * An h2c server that serves every request through one lane's entry point into the handler
 * (lane-test-server.ts), with sessions and a SubscribeMessages call to drive it.
 */
async function nodeServer(handler: NodeServedHandler & StreamServedHandler, lane: Lane) {
  const { server, url } = await listenOnLane(handler, lane, 415);
  const sessions = [http2.connect(url)];
  return {
    /** A session of its own, with `settings` (e.g. a small window). */
    connect(settings: http2.Settings) {
      const session = http2.connect(url, { settings });
      sessions.push(session);
      return session;
    },
    /** A gRPC SubscribeMessages call: its bytes as they come, and its trailers. */
    subscribe(
      headers: Record<string, string> = {},
      session = sessions[0] as http2.ClientHttp2Session,
    ) {
      const stream = session.request({
        ":method": "POST",
        ":path": "/chat.ChatService/SubscribeMessages",
        "content-type": "application/grpc",
        ...headers,
      });
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => {
        stream.on("trailers", resolve);
      });
      stream.on("error", () => {});
      stream.end(subscribeBody());
      /** Waits until `n` messages arrived (at most 5 s); the messages so far. */
      const messages = async (n: number) => {
        await vi
          .waitFor(
            () => expect(completeContents(Buffer.concat(chunks)).length).toBeGreaterThanOrEqual(n),
            {
              timeout: 5000,
            },
          )
          .catch(() => {});
        return completeContents(Buffer.concat(chunks));
      };
      return { stream, trailers, messages };
    },
    async close() {
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe.each(["serveNode", "serveStream"] as const)(
  "the SubscribeMessages writer on node:http2 (%s)",
  (lane) => {
    it("delivers a publish to every subscriber of the room, in order", async () => {
      const { handler, rooms, send, close } = setup();
      const server = await nodeServer(handler as LeanHandler, lane);
      try {
        const calls = Array.from({ length: 20 }, () => server.subscribe());
        for (const call of calls) await call.messages(1); // the welcome
        await vi.waitFor(() => expect(rooms.hub.counts().get("r")).toBe(20));
        await send("one");
        await send("two");
        // The first one also got the JOIN (the others joined after it was published).
        for (const call of calls) {
          await vi.waitFor(async () =>
            expect((await call.messages(3)).slice(-2)).toEqual(["one", "two"]),
          );
        }
      } finally {
        await server.close();
        close();
      }
    });

    it("reads a stream an interceptor wrapped one message at a time, and still delivers all", async () => {
      const wrap: Interceptor = (next) => async (req) => {
        const res = await next(req);
        if (!res.stream) return res;
        const inner = res.message;
        return {
          ...res,
          message: (async function* () {
            yield* inner;
          })(),
        };
      };
      const { handler, send, close } = setup({ interceptors: [wrap] });
      const server = await nodeServer(handler as LeanHandler, lane);
      try {
        const call = server.subscribe();
        await call.messages(2); // the welcome, the JOIN
        await send("a");
        await send("b");
        expect(await call.messages(4)).toEqual([
          "Welcome to room r, alice!",
          "alice joined",
          "a",
          "b",
        ]);
      } finally {
        await server.close();
        close();
      }
    });

    it("ends the call at its deadline: DeadlineExceeded in the trailers, and the subscriber leaves", async () => {
      const { handler, rooms, close } = setup();
      const server = await nodeServer(handler as LeanHandler, lane);
      try {
        const call = server.subscribe({ "grpc-timeout": "300m" });
        expect((await call.messages(1))[0]).toBe("Welcome to room r, alice!");
        const trailers = await call.trailers;
        expect(trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
        expect(rooms.hub.counts().get("r")).toBeUndefined();
      } finally {
        await server.close();
        close();
      }
    });

    it("stops writing to a subscriber that does not read (backpressure): its queue overflows, ResourceExhausted; a cancel leaves the room", async () => {
      const { handler, rooms, send, close } = setup({ queueLimit: 8 });
      const server = await nodeServer(handler as LeanHandler, lane);
      try {
        // A 64-byte stream window, and nothing read: once Node's 16 KiB write buffer is full the
        // writer waits for a `drain` that does not come, and the queue of 8 overflows, while a
        // subscriber that reads gets everything.
        const slow = server.subscribe({}, server.connect({ initialWindowSize: 64 }));
        slow.stream.pause();
        const reader = server.subscribe();
        await reader.messages(1);
        await vi.waitFor(() => expect(rooms.hub.counts().get("r")).toBe(2));
        // Until the slow one is cut off (Node's and nghttp2's buffers take some), then 20 more.
        let sent = 0;
        while (rooms.hub.slowConsumerDisconnects === 0 && sent < 5000) {
          await send(`${sent++}:`.padEnd(1000, "x"));
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        expect(rooms.hub.slowConsumerDisconnects).toBe(1);
        for (let i = 0; i < 20; i++) await send(`${sent++}:`);
        const numbered = (await reader.messages(sent)).filter((m) => /^\d+:/.test(m));
        expect(numbered.map((m) => Number.parseInt(m, 10))).toEqual(
          Array.from({ length: sent }, (_, i) => i),
        );
        // Read now: what was written comes, then the end.
        slow.stream.resume();
        const trailers = await slow.trailers;
        expect(trailers["grpc-status"]).toBe(String(Code.ResourceExhausted));
        expect(decodeURIComponent(String(trailers["grpc-message"]))).toMatch(
          /^slow consumer; resume from offset \d+$/,
        );
        // A cancel (RST_STREAM CANCEL) takes the reader out of the room.
        reader.stream.close(http2.constants.NGHTTP2_CANCEL);
        await vi.waitFor(() => expect(rooms.hub.counts().get("r")).toBeUndefined());
      } finally {
        await server.close();
        close();
      }
    });
  },
);
