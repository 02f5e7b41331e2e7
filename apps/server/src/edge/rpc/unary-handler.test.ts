import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextValues,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import {
  encodeEnvelope,
  type UniversalHandler,
  type UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import {
  ChatService,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it } from "vitest";
import { type Lane, listenOnLane } from "./lane-test-server.js";
import { createUnaryHandler } from "./unary-handler.js";
import { CALL_ENDED } from "./wire.js";

/** SendMessage on the unary handler, with an implementation that records its context. */
function setup(interceptors: Interceptor[] = [], fail?: ConnectError) {
  const seen: { context?: HandlerContext } = {};
  const router = createConnectRouter();
  router.rpc(ChatService.method.sendMessage, () => ({}));
  const fallback = router.handlers[0] as UniversalHandler;
  const handler = createUnaryHandler<
    typeof SendMessageRequestSchema,
    typeof SendMessageResponseSchema
  >(
    fallback,
    (req, context) => {
      seen.context = context;
      if (fail !== undefined) throw fail;
      return { messageId: `id-${req.content}`, offset: 7n };
    },
    {
      interceptors,
      readMaxBytes: 1024,

      shutdownSignal: new AbortController().signal,
    },
  );
  return { handler, seen };
}

function request(method: string, headers: Record<string, string>, body: Uint8Array) {
  return {
    httpVersion: "2.0",
    method,
    url: "http://localhost/chat.ChatService/SendMessage",
    header: new Headers(headers),
    body: (async function* () {
      yield body;
    })(),
    signal: new AbortController().signal,
    contextValues: createContextValues(),
  } satisfies UniversalServerRequest;
}

const sendBytes = (content: string) =>
  toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { room: "r", user: "u", content }),
  );

async function bodyOf(res: { body?: AsyncIterable<Uint8Array> }): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body ?? []) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe("the unary handler", () => {
  it("answers gRPC with one envelope and grpc-status 0 in the trailers", async () => {
    const { handler } = setup();
    const res = await handler(
      request("POST", { "content-type": "application/grpc" }, encodeEnvelope(0, sendBytes("a"))),
    );
    const body = await bodyOf(res);
    expect(body[0]).toBe(0);
    expect(fromBinary(SendMessageResponseSchema, body.subarray(5)).messageId).toBe("id-a");
    expect(res.trailer?.get("grpc-status")).toBe("0");
  });

  it("answers gRPC-Web with the trailers as the body's last envelope", async () => {
    const { handler } = setup([], new ConnectError("no such room", Code.NotFound));
    const res = await handler(
      request(
        "POST",
        { "content-type": "application/grpc-web+proto" },
        encodeEnvelope(0, sendBytes("a")),
      ),
    );
    const body = await bodyOf(res);
    expect(body[0]).toBe(0x80);
    expect(body.subarray(5).toString()).toContain(`grpc-status: ${Code.NotFound}`);
    expect(body.subarray(5).toString()).toContain("grpc-message: no%20such%20room");
  });

  it("answers a Connect error with its HTTP status, the error JSON and its metadata as headers", async () => {
    const limited = new ConnectError("publish rate exceeded", Code.ResourceExhausted, {
      "retry-after-ms": "250",
    });
    const { handler } = setup([], limited);
    const res = await handler(
      request("POST", { "content-type": "application/json" }, Buffer.from('{"content":"a"}')),
    );
    expect(res.status).toBe(429);
    expect(res.header?.get("retry-after-ms")).toBe("250");
    expect(JSON.parse((await bodyOf(res)).toString())).toEqual({
      code: "resource_exhausted",
      message: "publish rate exceeded",
    });
  });

  it("runs the interceptors around the implementation, in order", async () => {
    const order: string[] = [];
    const named =
      (name: string): Interceptor =>
      (next) =>
      async (req) => {
        order.push(`${name} in`);
        const res = await next(req);
        order.push(`${name} out`);
        return res;
      };
    const { handler } = setup([named("outer"), named("inner")]);
    const res = await handler(
      request("POST", { "content-type": "application/proto" }, sendBytes("a")),
    );
    expect(res.status).toBe(200);
    expect(order).toEqual(["outer in", "inner in", "inner out", "outer out"]);
  });

  it("ends the call's signal with one shared reason, not a new DOMException per call", async () => {
    const { handler, seen } = setup();
    await handler(request("POST", { "content-type": "application/proto" }, sendBytes("a")));
    expect(seen.context?.signal.aborted).toBe(true);
    expect(seen.context?.signal.reason).toBe(CALL_ENDED);
  });

  it("refuses a body that is not exactly one envelope, with connect-es's codes", async () => {
    const { handler } = setup();
    const two = Buffer.concat([
      encodeEnvelope(0, sendBytes("a")),
      encodeEnvelope(0, sendBytes("b")),
    ]);
    for (const [body, code] of [
      [new Uint8Array(0), Code.Unimplemented],
      [two, Code.Unimplemented],
      [Buffer.from([0, 0, 0, 0, 100, 1, 2]), Code.InvalidArgument],
    ] as const) {
      const res = await handler(request("POST", { "content-type": "application/grpc" }, body));
      await bodyOf(res);
      expect(res.trailer?.get("grpc-status")).toBe(String(code));
    }
  });

  it("leaves GET and compressed requests to connect-es's handler", async () => {
    const { handler, seen } = setup();
    const res = await handler(
      request(
        "POST",
        { "content-type": "application/proto", "content-encoding": "gzip" },
        sendBytes("a"),
      ),
    );
    await bodyOf(res);
    // connect-es's handler (this router accepts no compression) refuses it; ours never ran.
    expect(res.status).not.toBe(200);
    expect(seen.context).toBeUndefined();
  });
});

/**
 * A node:http2 server whose every request goes to `handler.serveNode` (the compat request and
 * response) or, with `lane` "serveStream", every stream to `handler.serveStream` (the raw stream,
 * as the lean lane serves it: edge/rpc/lean-lane.ts).
 */
async function serve(handler: ReturnType<typeof setup>["handler"], lane: Lane = "serveNode") {
  const { server, url } = await listenOnLane(handler, lane, 599);
  const session = http2.connect(url);
  return {
    session,
    close: async () => {
      session.close();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe.each(["serveNode", "serveStream"] as const)(
  "the unary handler on node:http2 (%s)",
  (lane) => {
    it("answers gRPC with one envelope and grpc-status 0 in the trailers, body read as it arrives", async () => {
      const { handler } = setup();
      const { session, close } = await serve(handler, lane);
      const stream = session.request({
        ":method": "POST",
        ":path": "/chat.ChatService/SendMessage",
        "content-type": "application/grpc",
        te: "trailers",
      });
      const envelope = encodeEnvelope(0, sendBytes("split"));
      // The envelope in two DATA frames: the handler waits for the whole of it.
      stream.write(envelope.subarray(0, 3));
      setTimeout(() => stream.end(envelope.subarray(3)), 20);
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const [headers, trailers] = await Promise.all([
        new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("response", resolve)),
        new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("trailers", resolve)),
      ]);
      await close();
      expect(headers[":status"]).toBe(200);
      expect(headers["content-type"]).toBe("application/grpc+proto");
      expect(trailers["grpc-status"]).toBe("0");
      const body = Buffer.concat(chunks);
      expect(fromBinary(SendMessageResponseSchema, body.subarray(5)).messageId).toBe("id-split");
    });

    it("aborts the call's signal with Canceled when the client resets the stream before the answer", async () => {
      const router = createConnectRouter();
      router.rpc(ChatService.method.sendMessage, () => ({}));
      let reason: unknown;
      let entered: () => void = () => {};
      const inImpl = new Promise<void>((resolve) => {
        entered = resolve;
      });
      const handler = createUnaryHandler<
        typeof SendMessageRequestSchema,
        typeof SendMessageResponseSchema
      >(
        router.handlers[0] as UniversalHandler,
        (_req, context) =>
          new Promise((resolve) => {
            entered();
            context.signal.addEventListener("abort", () => {
              reason = context.signal.reason;
              resolve({});
            });
          }),
        {
          interceptors: [],
          readMaxBytes: 1024,

          shutdownSignal: new AbortController().signal,
        },
      );
      const { session, close } = await serve(handler, lane);
      const stream = session.request({
        ":method": "POST",
        ":path": "/chat.ChatService/SendMessage",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.on("error", () => {});
      stream.end(encodeEnvelope(0, sendBytes("gone")));
      await inImpl;
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await expect.poll(() => reason).toBeInstanceOf(ConnectError);
      await close();
      expect((reason as ConnectError).code).toBe(Code.Canceled);
    });
  },
);

describe("the unary handler on Node's request and response (serveNode)", () => {
  it("leaves a compressed request to the caller (false), untouched", async () => {
    const { handler } = setup();
    const { session, close } = await serve(handler);
    const stream = session.request({
      ":method": "POST",
      ":path": "/chat.ChatService/SendMessage",
      "content-type": "application/grpc",
      "grpc-encoding": "gzip",
    });
    stream.end();
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) =>
      stream.once("response", resolve),
    );
    stream.resume();
    await close();
    expect(headers[":status"]).toBe(599);
  });
});
