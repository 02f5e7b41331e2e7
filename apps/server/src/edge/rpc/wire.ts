import type { DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type createHandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import * as connect from "@connectrpc/connect/protocol-connect";
import * as grpc from "@connectrpc/connect/protocol-grpc";
import * as grpcWeb from "@connectrpc/connect/protocol-grpc-web";
import { detectProtocol, type Wire } from "./protocol.js";
import type { RouterOptions } from "./router-options.js";

// The protocol side shared by Switchboard's own UniversalHandlers (edge/rpc/subscribe-handler.ts,
// unary-handler.ts): which requests they answer themselves, and the call context they run in.
// Everything comes from connect-es's protocol packages; only the choice of path is ours.

export type { Wire } from "./protocol.js";

/** What Switchboard's handlers share with the router: the same options object (app.ts). */
export type WireOptions = RouterOptions;

/**
 * The protocol and codec of a request Switchboard's handlers answer themselves: a POST with
 * gRPC, gRPC-Web (not text) or Connect (a streaming content type for a streaming method, a
 * unary one for a unary method), and an uncompressed body. Undefined for anything else, which
 * connect-es's own handler answers (compression, GET, unknown content types, errors). The
 * protocol and codec are the one detector's ({@link detectProtocol}).
 */
export function wireOf(req: UniversalServerRequest, unary: boolean): Wire | undefined {
  if (typeof req.body !== "object" || req.body === null) return undefined;
  const wire = detectProtocol(req.header.get("content-type"), req.method).wire;
  if (wire === undefined || wire.text) return undefined;
  // A Connect call's content type says its kind; gRPC and gRPC-Web frame every kind alike.
  if (wire.protocol === "connect" && wire.stream === unary) return undefined;
  const encoding = req.header.get(
    wire.protocol === "grpc"
      ? grpc.headerEncoding
      : wire.protocol === "grpc-web"
        ? grpcWeb.headerEncoding
        : unary
          ? connect.headerUnaryEncoding
          : connect.headerStreamEncoding,
  );
  if (encoding !== null && encoding !== "identity") return undefined;
  return wire;
}

/** The response content type for `wire`. */
export function contentTypeOf(wire: Wire, unary: boolean): string {
  switch (wire.protocol) {
    case "grpc":
      return wire.binary ? grpc.contentTypeProto : grpc.contentTypeJson;
    case "grpc-web":
      return wire.binary ? grpcWeb.contentTypeProto : grpcWeb.contentTypeJson;
    default:
      if (unary) return wire.binary ? connect.contentTypeUnaryProto : connect.contentTypeUnaryJson;
      return wire.binary ? connect.contentTypeStreamProto : connect.contentTypeStreamJson;
  }
}

/** The header a call's deadline is in: `connect-timeout-ms` or `grpc-timeout`. */
export function deadlineHeader(wire: Wire): string {
  return wire.protocol === "connect" ? connect.headerTimeout : grpc.headerTimeout;
}

/**
 * A call's deadline from the value of its {@link deadlineHeader}, ms (undefined: none), capped by
 * the router's `maxTimeoutMs` (absent: no cap); a bad or too long one is `error`,
 * InvalidArgument (connect-es's own parsers).
 */
export function parseDeadline(
  value: string | null,
  wire: Wire,
  options: Pick<RouterOptions, "maxTimeoutMs">,
): ReturnType<typeof grpc.parseTimeout> {
  return (wire.protocol === "connect" ? connect.parseTimeout : grpc.parseTimeout)(
    value,
    options.maxTimeoutMs ?? Number.MAX_SAFE_INTEGER,
  );
}

/** A call's context (connect-es's HandlerContext with `abort`), as {@link callContext} makes it. */
export type CallContext = ReturnType<typeof createHandlerContext>;

/** The interceptors around `terminal`, as connect-es applies them (the first one outermost). */
export function intercepted(
  interceptors: Interceptor[],
  terminal: Parameters<Interceptor>[0],
): Parameters<Interceptor>[0] {
  return interceptors.reduceRight((next, interceptor) => interceptor(next), terminal);
}

/**
 * The reason a call's signal is aborted with once the call is over. connect-es aborts with no
 * reason, which makes Node build a DOMException (with a stack trace) per call: 5–9% of a unary
 * call's CPU time in the profile (bench/README.md). One shared reason costs nothing.
 */
export const CALL_ENDED = new ConnectError("the call ended", Code.Canceled);

/** `handle` with the routing properties of the connect-es handler it stands in for. */
export function standIn(
  handle: (req: UniversalServerRequest) => ReturnType<UniversalHandler>,
  fallback: UniversalHandler,
): UniversalHandler {
  return Object.assign(handle, {
    protocolNames: fallback.protocolNames,
    allowedMethods: fallback.allowedMethods,
    supportedContentType: fallback.supportedContentType,
    requestPath: fallback.requestPath,
    service: fallback.service,
    method: fallback.method,
  });
}

/** Copies `from` into `to` (interceptors may return headers of their own). */
export function mergeHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const [key, value] of from) to.set(key, value);
}

// The calls to abort at shutdown, per shutdown signal: one listener on the shared signal instead
// of one per call (Node's EventTarget walks its listener list on every add and remove, so one
// listener per open stream made opening and closing N streams O(N²): see callContext).
const atShutdown = new WeakMap<AbortSignal, Set<LeanCall>>();

function callsAbortedBy(shutdown: AbortSignal): Set<LeanCall> {
  let calls = atShutdown.get(shutdown);
  if (calls === undefined) {
    const set = new Set<LeanCall>();
    calls = set;
    atShutdown.set(shutdown, set);
    shutdown.addEventListener(
      "abort",
      () => {
        for (const call of [...set]) call.abort(shutdown.reason);
        set.clear();
      },
      { once: true },
    );
  }
  return calls;
}

/**
 * What {@link callContext} reads of a request: a UniversalServerRequest has it all; a call
 * served from Node's request (edge/rpc/subscribe-handler.ts, `serveNode`) has no signal, and aborts
 * the context itself when its response closes early.
 */
export interface CallHead {
  method: string;
  url: string;
  header: Headers;
  contextValues?: ContextValues | undefined;
  /** Aborted when the client goes away; undefined when the caller calls `abort` itself. */
  signal?: AbortSignal | undefined;
}

/**
 * The one builder of a lean handler's call context (edge/rpc/unary-handler.ts,
 * subscribe-handler.ts; connect-es's own handlers build theirs with its `createHandlerContext`):
 * the same fields, deadline, cancel and shutdown behaviour and errors as connect-es's, from the
 * deadline header (`grpc-timeout` or `connect-timeout-ms`: a bad or too long one is
 * `timeoutError`, InvalidArgument, for the caller to answer), built with fewer objects, which
 * matters most for calls that live long (SubscribeMessages streams): connect-es's
 * `createHandlerContext` makes a deadline AbortController even without a
 * deadline, a linked AbortController with four listeners (one on the shared shutdown signal), and
 * a copy of the request headers. Here: one AbortController, a timer only with a deadline, one
 * listener on the request's signal (none without one: see {@link CallHead}), the shutdown signal
 * watched through one shared listener, and the request's own Headers as `requestHeader` (the
 * request is this call's alone). The context is one object whose `abort` and `timeoutMs` are
 * methods and which is itself the request signal's listener (`handleEvent`), so a call makes no
 * closure: each would cost an idle stream a function, its context and, under tsx (esbuild's
 * keepNames), a 256-byte property array for its `name` (bench/README.md, memory per idle stream).
 *
 * `abort(reason)` ends the call once (a later abort is ignored), as connect-es's does: the
 * signal's reason is `reason`; a client cancel aborts with the request signal's reason, the
 * deadline with DeadlineExceeded "the operation timed out", shutdown with the shutdown signal's
 * reason.
 */
export function callContext(
  req: CallHead,
  wire: Wire,
  method: DescMethod,
  options: WireOptions,
  unary: boolean,
): { context: LeanCallContext; timeoutError: ConnectError | undefined } {
  const timeout = parseDeadline(req.header.get(deadlineHeader(wire)), wire, options);
  const call = new LeanCall(req, wire, method, unary, callsAbortedBy(options.shutdownSignal));
  const requestSignal = req.signal;
  if (requestSignal?.aborted === true) call.abort(requestSignal.reason);
  else if (options.shutdownSignal.aborted) call.abort(options.shutdownSignal.reason);
  else call.start(timeout.timeoutMs);
  return { context: call, timeoutError: timeout.error };
}

/** The context {@link callContext} makes: a {@link CallContext} that can drop its request
 * headers. */
export type LeanCallContext = CallContext & {
  /** Lets the request's headers go once the call has started; `requestHeader` is empty then. */
  forgetRequestHeader(): void;
  /**
   * Lets the response headers go once they were sent (a long stream need not keep them);
   * `responseHeader` is a fresh one, with the content type, after that.
   */
  forgetResponseHeader(): void;
};

/** The deadline's end of a call (a timer's callback: no closure per call). */
function deadlineExceeded(call: LeanCall): void {
  call.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
}

/** The call context {@link callContext} makes. */
class LeanCall implements LeanCallContext {
  readonly service: DescMethod["parent"];
  readonly protocolName: string;
  readonly requestMethod: string;
  readonly url: string;
  readonly signal: AbortSignal;
  readonly values: ContextValues;
  private readonly controller = new AbortController();
  private readonly requestSignal: AbortSignal | undefined;
  private timer: NodeJS.Timeout | undefined;
  private deadlineAt: number | undefined;
  private request: Headers | undefined;
  // The response's headers and trailers, made when first used: an open stream sends its headers
  // once and its trailers at the end, and need not hold two web Headers (~0.4 KiB each) between.
  private header: Headers | undefined;
  private trailer: Headers | undefined;
  private readonly contentType: string;
  private readonly grpcTrailers: boolean;

  constructor(
    req: CallHead,
    wire: Wire,
    readonly method: DescMethod,
    unary: boolean,
    private readonly shutdown: Set<LeanCall>,
  ) {
    this.service = method.parent;
    this.protocolName = wire.protocol;
    this.requestMethod = req.method;
    this.url = req.url;
    this.signal = this.controller.signal;
    this.requestSignal = req.signal;
    this.request = req.header;
    this.contentType = contentTypeOf(wire, unary);
    this.grpcTrailers = wire.protocol !== "connect";
    this.values = req.contextValues ?? createContextValues();
  }

  /** Starts watching the request signal, shutdown and the deadline (`timeoutMs`, if any). */
  start(timeoutMs: number | undefined): void {
    this.requestSignal?.addEventListener("abort", this);
    this.shutdown.add(this);
    if (timeoutMs === undefined) return;
    this.deadlineAt = Date.now() + timeoutMs;
    if (timeoutMs <= 0) deadlineExceeded(this);
    else this.timer = setTimeout(deadlineExceeded, timeoutMs, this);
  }

  /** The response's headers: the content type, and what the call adds. */
  get responseHeader(): Headers {
    this.header ??= new Headers({ "content-type": this.contentType });
    return this.header;
  }

  /** The response's trailers: gRPC's `grpc-status: 0` (none for Connect), and what the call adds. */
  get responseTrailer(): Headers {
    this.trailer ??= new Headers(
      this.grpcTrailers ? { "grpc-status": grpc.grpcStatusOk } : undefined,
    );
    return this.trailer;
  }

  forgetResponseHeader(): void {
    this.header = undefined;
  }

  /** The request's headers; empty once {@link LeanCall.forgetRequestHeader} was called. */
  get requestHeader(): Headers {
    this.request ??= new Headers();
    return this.request;
  }

  /**
   * Lets the request's headers go once the call has started (the interceptors read them then, and
   * nothing reads them later): a stream that stays open for hours need not keep a web `Headers`
   * copy of them (~1 KiB: bench/README.md, memory per idle stream).
   */
  forgetRequestHeader(): void {
    this.request = undefined;
  }

  /** Ms left until the deadline; undefined without one. */
  timeoutMs(): number | undefined {
    return this.deadlineAt === undefined ? undefined : this.deadlineAt - Date.now();
  }

  /** Ends the call once: the signal aborts with `reason`; a later abort is ignored. */
  abort(reason?: unknown): void {
    if (this.signal.aborted) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.requestSignal?.removeEventListener("abort", this);
    this.shutdown.delete(this);
    this.controller.abort(reason);
  }

  /** The request signal's listener: the client went away. */
  handleEvent(): void {
    this.abort(this.requestSignal?.reason);
  }
}
