import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { NodeSDK } from "@opentelemetry/sdk-node";
import type { MessageStore } from "../store/message-store.js";
import { type StoreTracing, tracedStore } from "./traced-store.js";

// OpenTelemetry tracing, with the standard SDK (@opentelemetry/sdk-node) configured by the
// standard OTEL_* variables. This module is loaded only when tracing is on (server.ts, when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set): with tracing off,
// neither the SDK nor the API is loaded, and the code that would make spans is not in the path
// (app.ts gives the observe interceptor and the store no tracer).

/** The instrumentation scope of every span the server makes. */
const SCOPE = "switchboard";

/** The service name when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names one. */
const DEFAULT_SERVICE_NAME = "switchboard";

/**
 * Status codes that make a server span's status Error, by the OpenTelemetry RPC semantic
 * conventions for gRPC and Connect servers (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
 * UNAVAILABLE, DATA_LOSS: the server's failures, not the caller's mistakes). Connect codes and
 * gRPC status codes have the same numbers.
 */
const SERVER_ERROR_CODES = new Set([2, 4, 12, 13, 14, 15]);

/** The request headers of a call, as connect-es gives them (the Fetch API's Headers). */
export interface HeaderSource {
  get(name: string): string | null;
  keys(): Iterable<string>;
}

const headerGetter: TextMapGetter<HeaderSource> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};

/** The trace-context carrier of one message: its `traceparent` (MessageDraft.trace). */
interface Carrier {
  traceparent?: string;
}
const carrierGetter: TextMapGetter<Carrier> = {
  get: (carrier, key) => (key === "traceparent" ? carrier.traceparent : undefined),
  keys: () => ["traceparent"],
};

/** The wire protocol of a call, as the access log names it (edge/rpc/rpc-context.ts). */
export type RpcProtocolName = "connect" | "grpc" | "grpcweb";

/**
 * One RPC's server span (kind SERVER, named `package.Service/Method`), with the RPC semantic
 * conventions' attributes: `rpc.system` (`grpc` for gRPC and gRPC-Web, `connect_rpc` for
 * Connect), `rpc.service`, `rpc.method`, and when it ends `rpc.grpc.status_code` (gRPC,
 * gRPC-Web: the status, 0 for OK) or `rpc.connect_rpc.error_code` (Connect: the error code's
 * name, on errors only). Its status is Error for the server's failures (see
 * {@link SERVER_ERROR_CODES}), with the error's message; unset otherwise.
 */
export class RpcSpan {
  private readonly active: Context;

  constructor(
    private readonly span: Span,
    parent: Context,
    private readonly protocol: RpcProtocolName,
  ) {
    this.active = trace.setSpan(parent, span);
  }

  /** The trace id (32 hex digits) when the span is recorded (sampled), else undefined. */
  get traceId(): string | undefined {
    return this.span.isRecording() ? this.span.spanContext().traceId : undefined;
  }

  /** Runs `fn` with this span as the active one: what it starts (store spans) are children. */
  run<T>(fn: () => T): T {
    return context.with(this.active, fn);
  }

  /**
   * Ends the span (once) with the call's outcome.
   * @param code the Connect / gRPC code; undefined for OK.
   * @param codeName the Connect error code's name (`invalid_argument`); undefined for OK.
   * @param message the error's message, for an Error status.
   */
  end(code: number | undefined, codeName: string | undefined, message: string | undefined): void {
    const span = this.span;
    if (!span.isRecording()) return;
    if (this.protocol === "connect") {
      if (codeName !== undefined) span.setAttribute("rpc.connect_rpc.error_code", codeName);
    } else {
      span.setAttribute("rpc.grpc.status_code", code ?? 0);
    }
    if (code !== undefined) {
      if (codeName !== undefined) span.setAttribute("error.type", codeName);
      if (SERVER_ERROR_CODES.has(code)) {
        span.setStatus({
          code: SpanStatusCode.ERROR,
          ...(message === undefined ? {} : { message }),
        });
      }
    }
    span.end();
  }
}

/**
 * The process's tracing: the SDK, the server's tracer, the RPC server spans, the store's spans
 * (telemetry/traced-store.ts) and the trace context carried with each message. Made by
 * {@link startTracing}.
 */
export class Tracing implements StoreTracing {
  /** The format a message's trace context travels in: W3C Trace Context, whatever OTEL_PROPAGATORS says. */
  private readonly w3c = new W3CTraceContextPropagator();

  constructor(
    private readonly sdk: { shutdown(): Promise<void> },
    readonly tracer: Tracer,
  ) {}

  /**
   * Starts the server span of one call, the child of the trace context in its request headers
   * (W3C `traceparent` and `tracestate`, gRPC metadata and HTTP headers alike, through the
   * propagators OTEL_PROPAGATORS names: W3C Trace Context and Baggage by default).
   */
  startRpc(
    service: string,
    method: string,
    protocol: RpcProtocolName,
    headers: HeaderSource,
  ): RpcSpan {
    const parent = propagation.extract(ROOT_CONTEXT, headers, headerGetter);
    const span = this.tracer.startSpan(
      `${service}/${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "rpc.system": protocol === "connect" ? "connect_rpc" : "grpc",
          "rpc.service": service,
          "rpc.method": method,
        },
      },
      parent,
    );
    return new RpcSpan(span, parent, protocol);
  }

  /**
   * `span`'s context as a W3C `traceparent` when it is sampled (what a message carries: see
   * MessageDraft.trace), else undefined: an unsampled append costs the feeds nothing.
   */
  traceparentOf(span: Span): string | undefined {
    if (!span.isRecording()) return undefined;
    const carrier: Carrier = {};
    this.w3c.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, {
      set: (c, key, value) => {
        if (key === "traceparent") c.traceparent = value;
      },
    });
    return carrier.traceparent;
  }

  /** The context a message's `traceparent` names (a remote span context); undefined if invalid. */
  contextOf(traceparent: string): Context | undefined {
    const extracted = this.w3c.extract(ROOT_CONTEXT, { traceparent }, carrierGetter);
    return trace.getSpanContext(extracted) === undefined ? undefined : extracted;
  }

  /**
   * `store` with spans for its appends, history reads and the deliveries of its feeds (see
   * telemetry/traced-store.ts). `delivered` reads the fan-out's delivery count (RoomHub).
   */
  traceStore<S extends MessageStore>(store: S, delivered: () => number): S {
    return tracedStore(store, this, delivered);
  }

  /**
   * Exports what is still buffered and stops the SDK; gives up after `timeoutMs` (a collector
   * that does not answer must not hold the process's shutdown). Never rejects.
   */
  async shutdown(timeoutMs = 2_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.sdk.shutdown().catch(() => {}),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

/** Whether the OTEL_* variables leave tracing on (SDK enabled, a trace exporter configured). */
export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "").split(",").map((s) => s.trim());
  return exporters[0] !== "none";
}

/**
 * Starts the OpenTelemetry SDK for this process's traces and returns the server's
 * {@link Tracing}, or undefined when the OTEL_* variables turn tracing off (OTEL_SDK_DISABLED=true,
 * OTEL_TRACES_EXPORTER=none). The SDK reads the standard variables itself: the OTLP endpoint and
 * protocol (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
 * OTEL_EXPORTER_OTLP_PROTOCOL, default `http/protobuf`, or `http/json`, `grpc`), headers, the
 * sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; default `parentbased_always_on`), the
 * batch processor (OTEL_BSP_*), the propagators (OTEL_PROPAGATORS), the resource
 * (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES). The service name is `switchboard` unless one of
 * those names it. Only traces: Switchboard's metrics are /metrics (Prometheus), its logs stdout.
 *
 * @param endpoint the endpoint from the configuration (a flag may have given it): set as
 *   OTEL_EXPORTER_OTLP_ENDPOINT for the SDK when the environment has none.
 */
export function startTracing(
  endpoint: { base: string | undefined; traces: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): Tracing | undefined {
  if (!tracingWanted(env)) return undefined;
  // The configuration's values (a flag wins over its variable) are what the SDK reads.
  if (endpoint.base !== undefined) env.OTEL_EXPORTER_OTLP_ENDPOINT = endpoint.base;
  if (endpoint.traces !== undefined) env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = endpoint.traces;
  const named =
    (env.OTEL_SERVICE_NAME ?? "") !== "" ||
    /(^|,)\s*service\.name=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? "");
  const sdk = new NodeSDK({
    ...(named ? {} : { serviceName: DEFAULT_SERVICE_NAME }),
    // Traces only: no metric reader, no log exporter (OTEL_METRICS_EXPORTER and
    // OTEL_LOGS_EXPORTER would otherwise default to OTLP).
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  return new Tracing(sdk, trace.getTracer(SCOPE));
}
