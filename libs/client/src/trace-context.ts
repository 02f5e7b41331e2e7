import type { Interceptor } from "@connectrpc/connect";

/** What the interceptor uses of `@opentelemetry/api`. */
type OtelApi = Pick<typeof import("@opentelemetry/api"), "context" | "propagation">;

/**
 * `@opentelemetry/api`, loaded once on the first call: undefined when the application does not
 * have it (an optional peer dependency), and then never asked for again.
 */
let api: OtelApi | undefined | null = null;
let loading: Promise<OtelApi | undefined> | undefined;

function loadApi(): Promise<OtelApi | undefined> {
  loading ??= import("@opentelemetry/api").then(
    (m) => {
      api = m;
      return m;
    },
    () => {
      api = undefined;
      return undefined;
    },
  );
  return loading;
}

const setter = {
  set(carrier: Headers, key: string, value: string) {
    carrier.set(key, value);
  },
};

function inject(otel: OtelApi, header: Headers): void {
  otel.propagation.inject(otel.context.active(), header, setter);
}

/**
 * Sends the caller's OpenTelemetry trace context with every call, when the application has
 * OpenTelemetry set up: the active context, through the propagator the application registered
 * (W3C `traceparent` and `tracestate` with the SDK's defaults) into the request headers, which
 * gRPC carries as metadata. A Switchboard server with tracing on continues that trace (its
 * server span is the caller's span's child).
 *
 * Without `@opentelemetry/api` installed (an optional peer dependency), or with no propagator
 * registered, it adds nothing. The Node transports (`createNodeTransport`) include it; a browser
 * application that sets up OpenTelemetry adds it to `interceptors`, from
 * `@switchboard/client/trace-context` (not included by `createWebTransport`: a bundler fails on
 * an import of a package the application does not have).
 */
export const traceContextInterceptor: Interceptor = (next) => (req) => {
  if (api === undefined) return next(req);
  if (api !== null) {
    inject(api, req.header);
    return next(req);
  }
  // First call: load the API, then inject. The await keeps the caller's async context (Node's
  // AsyncLocalStorage), so the context read after it is still the caller's.
  return loadApi().then((otel) => {
    if (otel !== undefined) inject(otel, req.header);
    return next(req);
  });
};
