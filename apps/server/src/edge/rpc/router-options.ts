import type { JsonReadOptions, JsonWriteOptions } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";

/**
 * The router's options, built once (app.ts): connect-fastify's router gets them, and so do
 * Switchboard's own handlers (edge/rpc/unary-handler.ts, edge/rpc/subscribe-handler.ts), so that
 * every RPC runs the same interceptors under the same limits whichever handler serves it. The shape
 * is connect-es's `ConnectRouterOptions` subset these handlers read.
 */
export interface RouterOptions {
  /** The interceptor chain, outermost first (edge/rpc/interceptor-chain.ts). */
  readonly interceptors: Interceptor[];
  /** The largest request message, bytes (larger: ResourceExhausted). */
  readonly readMaxBytes: number;
  /**
   * The largest deadline a client may ask for, ms (longer: InvalidArgument); absent: no cap, as
   * in connect-es.
   */
  readonly maxTimeoutMs?: number;
  /** Aborted at shutdown: every call ends (Unavailable). */
  readonly shutdownSignal: AbortSignal;
  /** JSON options of every handler (connect-es's defaults when unset: unknown fields ignored). */
  readonly jsonOptions?: Partial<JsonReadOptions & JsonWriteOptions>;
}

/** What {@link createRouterOptions} reads: the settings as configured. */
export interface RouterSettings extends Omit<RouterOptions, "maxTimeoutMs"> {
  /** MAX_TIMEOUT_MS: the deadline cap, ms; 0 for no cap. */
  readonly maxTimeoutMs: number;
}

/** The one router-options object; `maxTimeoutMs` 0 (no cap) becomes connect-es's "absent". */
export function createRouterOptions(settings: RouterSettings): RouterOptions {
  const { maxTimeoutMs, ...rest } = settings;
  return Object.freeze(maxTimeoutMs > 0 ? { ...rest, maxTimeoutMs } : rest);
}
