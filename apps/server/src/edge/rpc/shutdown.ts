import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { policyOf } from "../../policy/method-policy.js";

/** The message of the Unavailable error that ends calls and streams at shutdown. */
export const SHUTTING_DOWN = "server shutting down";

/**
 * The Unavailable error an open stream ends with at shutdown; with `resumeFrom`, the message
 * names the last offset the stream delivered: "server shutting down; resume from offset N".
 */
export function shutdownError(resumeFrom?: number): ConnectError {
  return new ConnectError(
    resumeFrom === undefined ? SHUTTING_DOWN : `${SHUTTING_DOWN}; resume from offset ${resumeFrom}`,
    Code.Unavailable,
  );
}

/** Whether `reason` (an abort reason or an error) is the server shutting down. */
export function isShutdown(reason: unknown): boolean {
  return (
    reason instanceof ConnectError &&
    reason.code === Code.Unavailable &&
    reason.rawMessage.startsWith(SHUTTING_DOWN)
  );
}

/** What turns NOT_SERVING at shutdown: the health service's status (ops/health.ts). */
export interface ShutdownHealth {
  /** Every service answers NOT_SERVING from now on. */
  shutdown(): void;
}

/**
 * The server's way down, in the order operators expect (Kubernetes, Envoy, grpc-go's
 * GracefulStop): {@link Lifecycle.beginShutdown} turns readiness false and health NOT_SERVING at
 * once and refuses new calls with Unavailable; then app.close() ends open streams, sends GOAWAY,
 * lets in-flight unary calls finish and closes the store.
 */
export class Lifecycle {
  /** True from the moment shutdown begins: /readyz answers 503, new calls are refused. */
  draining = false;

  constructor(private readonly health: ShutdownHealth) {}

  /**
   * Starts shutting down. Resolves after `flushMs`, time for health Watch streams to send
   * NOT_SERVING before the streams are ended.
   */
  async beginShutdown(flushMs = 50): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.health.shutdown();
    await sleep(flushMs);
  }

  /**
   * Refuses every new call with Unavailable "server shutting down" once shutdown began, except
   * the open methods (policy/method-policy.ts): health checks (which answer NOT_SERVING) and
   * reflection.
   */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (this.draining && policyOf(req.method)?.open !== true) throw shutdownError();
      return next(req);
    };
  }
}
