import { Code, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "pino";
import { eachMessage } from "../../policy/each-message.js";
import type { RpcSpan, Tracing } from "../../telemetry/tracing.js";
import { identityKey } from "./auth.js";
import { toConnectError } from "./errors.js";
import { requestIdKey } from "./request-id.js";
import {
  type CallMetrics,
  type Protocol,
  peerKey,
  protocolOf,
  type RpcCell,
  rpcTypeOf,
} from "./rpc-context.js";
import { observeStream, type StreamObserver } from "./stream-observer.js";

/**
 * The request header a client names itself with (the dashboard sends `dashboard`), logged as
 * `client` so that a log reader can tell its own calls apart.
 */
export const CLIENT_HEADER = "x-switchboard-client";
/** What of the header is logged: a short name, nothing that could forge a log line. */
const CLIENT_NAME = /^[A-Za-z0-9._-]{1,32}$/;

/** Codes that mean the server failed, logged at warn; every other outcome is info. */
const SERVER_FAULTS = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);

/**
 * The outermost interceptor: counts every call in the gRPC server metrics and writes one log
 * line per RPC when it ends (`msg: "rpc"`, with `method`, `protocol`, `code`, `durationMs`,
 * `peer`, `requestId`, `user` when authenticated, and `client` when the caller names itself in
 * the `x-switchboard-client` header, as the dashboard does; for a failed call `error`, the
 * message the caller saw, its reason; for an Internal, Unknown or DataLoss outcome also `err`,
 * the error behind it, and the line is at warn). A
 * streaming call ends with its last message; a call the client abandons is logged as Canceled.
 * Headers are never logged, so no credential is.
 *
 * With `tracing` (OpenTelemetry on: telemetry/tracing.ts), each call is also one server span,
 * the child of the caller's `traceparent`, active while the handler runs (the store's spans are
 * its children) and ended with the call by the same record, with the code the caller gets; its
 * log line then carries `trace_id`. Without it, nothing of tracing runs. A request refused before
 * connect-es (edge/rpc/rpc-gate.ts, edge/rpc/fastify-refusals.ts, the transport's caps) is no
 * call: no log line, no span.
 */
export function createObserveInterceptor(deps: {
  metrics: CallMetrics;
  logger: Logger;
  tracing?: Tracing | undefined;
}): Interceptor {
  const { metrics, logger, tracing } = deps;
  return (next) => (req) => {
    const protocol = protocolOf(req.header.get("content-type"));
    if (tracing === undefined) return observe(next, req, protocol, undefined);
    const span = tracing.startRpc(req.service.typeName, req.method.name, protocol, req.header);
    return span.run(() => observe(next, req, protocol, span));
  };

  async function observe(
    next: Parameters<Interceptor>[0],
    req: Parameters<ReturnType<Interceptor>>[0],
    protocol: Protocol,
    span: RpcSpan | undefined,
  ): ReturnType<ReturnType<Interceptor>> {
    const cell = metrics.cell(
      req.service.typeName,
      req.method.name,
      rpcTypeOf(req.method),
      protocol,
    );
    metrics.callStarted(cell);
    // What the log line needs, taken now: the record lives as long as a stream does, and holding
    // `req` would keep its request pipeline (generators, body reader) alive with it.
    const call = new CallRecord(
      metrics,
      logger,
      cell,
      `/${req.service.typeName}/${req.method.name}`,
      protocol,
      req.contextValues,
      req.header.get(CLIENT_HEADER),
      span,
    );
    if (!req.stream) {
      cell.received++;
      try {
        const res = await next(req);
        cell.sent++;
        call.onEnd(undefined);
        return res;
      } catch (err) {
        call.onEnd(err);
        throw err;
      }
    }
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next({
        ...req,
        message: eachMessage(req.message, {
          each: (message) => {
            cell.received++;
            return message;
          },
        }),
      });
    } catch (err) {
      call.onEnd(err);
      throw err;
    }
    if (!res.stream) return res;
    return { ...res, message: observeStream(res.message, call) };
  }
}

/**
 * One call's metrics and log line, and the observer of its response stream: one object per call
 * with methods, not closures (an open stream keeps it: bench/README.md, memory per idle stream).
 */
class CallRecord implements StreamObserver {
  private readonly start = performance.now();
  private finished = false;

  constructor(
    private readonly metrics: CallMetrics,
    private readonly logger: Logger,
    private readonly cell: RpcCell,
    private readonly method: string,
    private readonly protocol: string,
    private readonly values: ContextValues,
    private readonly client: string | null,
    /** The call's server span, when tracing is on. */
    private readonly span: RpcSpan | undefined,
  ) {}

  onMessages(n: number): void {
    this.cell.sent += n;
  }

  /** The call ended (once): counted, and logged. */
  onEnd(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    const durationMs = performance.now() - this.start;
    // The code the caller gets: edge/rpc/errors.ts's mapping (an error no one mapped is
    // Internal, as connect-es answers it).
    const error = err === undefined ? undefined : toConnectError(err);
    const code = error?.code;
    const codeName = code === undefined ? "OK" : Code[code];
    this.metrics.callHandled(this.cell, codeName, durationMs / 1000);
    const { values, client } = this;
    const fields: Record<string, unknown> = {
      method: this.method,
      protocol: this.protocol,
      code: codeName,
      durationMs: Math.round(durationMs * 1000) / 1000,
      peer: values.get(peerKey),
      requestId: values.get(requestIdKey),
    };
    const user = values.get(identityKey)?.sub;
    if (user !== undefined) fields.user = user;
    if (client !== null && CLIENT_NAME.test(client)) fields.client = client;
    // A failed call's reason: the message the caller saw with its code.
    if (error !== undefined) fields.error = error.rawMessage;
    if (this.span !== undefined) {
      const traceId = this.span.traceId;
      if (traceId !== undefined) fields.trace_id = traceId;
      this.span.end(code, code === undefined ? undefined : codeToString(code), error?.rawMessage);
    }
    if (error !== undefined && SERVER_FAULTS.has(error.code)) {
      // The caller saw only "internal error"; the log gets what happened.
      if (error.cause !== undefined) fields.err = error.cause;
      this.logger.warn(fields, "rpc");
    } else {
      this.logger.info(fields, "rpc");
    }
  }
}
