import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it } from "vitest";
import { createRouterOptions } from "./router-options.js";
import { callContext, type WireOptions } from "./wire.js";

const method = ChatService.method.subscribeMessages;

function request(headers: Record<string, string>, signal: AbortSignal): UniversalServerRequest {
  return {
    httpVersion: "2.0",
    method: "POST",
    url: "http://localhost/chat.ChatService/SubscribeMessages",
    header: new Headers({ "content-type": "application/grpc", ...headers }),
    body: (async function* () {})(),
    signal,
    contextValues: createContextValues(),
  };
}

function options(shutdownSignal: AbortSignal, maxTimeoutMs = 0): WireOptions {
  return createRouterOptions({
    interceptors: [],
    readMaxBytes: 1 << 20,
    maxTimeoutMs,
    shutdownSignal,
  });
}

const grpcWire = { protocol: "grpc", binary: true } as const;

describe("callContext", () => {
  it("has connect-es's context fields: headers, trailers, values, no deadline", () => {
    const req = request({}, new AbortController().signal);
    const { context, timeoutError } = callContext(
      req,
      grpcWire,
      method,
      options(new AbortController().signal),
      false,
    );
    expect(timeoutError).toBeUndefined();
    expect(context.requestHeader.get("content-type")).toBe("application/grpc");
    expect(context.responseHeader.get("content-type")).toBe("application/grpc+proto");
    expect(context.responseTrailer.get("grpc-status")).toBe("0");
    expect(context.values).toBe(req.contextValues);
    expect(context.timeoutMs()).toBeUndefined();
    expect(context.signal.aborted).toBe(false);
    // Once the call has started, the request's headers can go (an open stream keeps none).
    context.forgetRequestHeader();
    expect([...context.requestHeader]).toEqual([]);
    context.abort();
  });

  it("a call without a request signal (served from Node's response) is aborted by its owner", () => {
    const { context } = callContext(
      {
        method: "POST",
        url: "http://localhost/chat.ChatService/SubscribeMessages",
        header: new Headers({ "content-type": "application/grpc" }),
      },
      grpcWire,
      method,
      options(new AbortController().signal),
      false,
    );
    expect(context.signal.aborted).toBe(false);
    const gone = new ConnectError("the client closed the call", Code.Canceled);
    context.abort(gone);
    context.abort(new Error("later"));
    expect(context.signal.reason).toBe(gone);
  });

  it("aborts on the client's cancel, the deadline and shutdown, once, with each one's reason", async () => {
    const shutdown = new AbortController();
    const client = new AbortController();
    const cancelled = callContext(
      request({}, client.signal),
      grpcWire,
      method,
      options(shutdown.signal),
      false,
    ).context;
    client.abort(new ConnectError("gone", Code.Canceled));
    expect((cancelled.signal.reason as ConnectError).code).toBe(Code.Canceled);

    const timed = callContext(
      request({ "grpc-timeout": "20m" }, new AbortController().signal),
      grpcWire,
      method,
      options(shutdown.signal),
      false,
    ).context;
    expect(timed.timeoutMs()).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 60));
    expect((timed.signal.reason as ConnectError).code).toBe(Code.DeadlineExceeded);

    // Many calls, one listener on the shutdown signal; each is aborted with its reason.
    const calls = Array.from(
      { length: 100 },
      () =>
        callContext(
          request({}, new AbortController().signal),
          grpcWire,
          method,
          options(shutdown.signal),
          false,
        ).context,
    );
    const ended = calls[0] as (typeof calls)[number];
    ended.abort(new ConnectError("done", Code.Canceled));
    shutdown.abort(new ConnectError("server shutting down", Code.Unavailable));
    for (const call of calls.slice(1)) {
      expect((call.signal.reason as ConnectError).code).toBe(Code.Unavailable);
    }
    // An ended call keeps its own end.
    expect((ended.signal.reason as ConnectError).rawMessage).toBe("done");
    // A call that starts after shutdown is aborted at once.
    const late = callContext(
      request({}, new AbortController().signal),
      grpcWire,
      method,
      options(shutdown.signal),
      false,
    ).context;
    expect((late.signal.reason as ConnectError).code).toBe(Code.Unavailable);
  });

  it("a deadline over the cap is InvalidArgument, as connect-es says it", () => {
    const { timeoutError } = callContext(
      request({ "grpc-timeout": "10S" }, new AbortController().signal),
      grpcWire,
      method,
      options(new AbortController().signal, 1000),
      false,
    );
    expect(timeoutError?.code).toBe(Code.InvalidArgument);
  });
});
