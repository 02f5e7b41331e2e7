import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { eachMessage } from "../../policy/each-message.js";
import { policyOf } from "../../policy/method-policy.js";
import { SETTINGS } from "../../settings.js";
import { type LimitCounter, LocalLimitCounter, type StreamSlot } from "../../store/limits.js";
import { identityKey } from "./auth.js";
import { toConnectError } from "./errors.js";
import { peerKey } from "./rpc-context.js";
import { observeStream } from "./stream-observer.js";

/** Per-identity limits; 0 turns a limit off. */
export interface LimitsConfig {
  /** Messages an identity may publish per second, sustained (token bucket refill rate). */
  publishRatePerS: number;
  /** Messages an identity may publish in one burst (token bucket size). */
  publishBurst: number;
  /** Streaming calls one identity may have open at once. */
  maxStreamsPerIdentity: number;
}

/**
 * Per-identity limits as a Connect interceptor, after authentication: the identity is the
 * token's `sub`, or the peer's IP address when authentication is off. Publishing faster than the
 * token bucket allows fails with ResourceExhausted "publish rate exceeded (PUBLISH_RATE R/s); retry in N ms" (and
 * `retry-after-ms: N` in the error metadata); which calls publish, and how many messages each,
 * is the method's row (`publishes` in policy/method-policy.ts): a unary call one, a client or
 * bidi stream one per message. Opening more than `maxStreamsPerIdentity` streams fails with
 * ResourceExhausted "too many open streams (MAX_STREAMS_PER_IDENTITY N)". The open methods (health and reflection) are not limited.
 *
 * `counter` keeps the counts: this process's own by default; the Redis store's is shared by
 * every node and worker (store/redis/limits.ts). A limit that is off (0) is never asked of it.
 * When a shared counter cannot be reached, the call fails with Unavailable.
 */
export function createLimitsInterceptor(
  config: LimitsConfig,
  counter: LimitCounter = new LocalLimitCounter(),
): Interceptor {
  const burst = Math.max(1, config.publishBurst);
  const takeToken = async (who: string, signal: AbortSignal) => {
    if (config.publishRatePerS <= 0) return;
    let waitMs: number;
    try {
      waitMs = await counter.takePublishToken(who, config.publishRatePerS, burst, signal);
    } catch (err) {
      throw toConnectError(err);
    }
    if (waitMs > 0) {
      throw new ConnectError(
        `publish rate exceeded (${SETTINGS.publishRatePerS.env} ${config.publishRatePerS}/s); retry in ${waitMs} ms`,
        Code.ResourceExhausted,
        { "retry-after-ms": String(waitMs) },
      );
    }
  };
  return (next) => async (req) => {
    const policy = policyOf(req.method);
    if (policy?.open === true) return next(req);
    const who =
      req.contextValues.get(identityKey)?.sub ??
      req.contextValues.get(peerKey).replace(/:\d+$/, "");
    const publishes = policy?.publishes === true;
    if (!req.stream) {
      if (publishes) await takeToken(who, req.signal);
      return next(req);
    }
    let slot: StreamSlot | undefined;
    if (config.maxStreamsPerIdentity > 0) {
      try {
        slot = await counter.acquireStream(who, config.maxStreamsPerIdentity, req.signal);
      } catch (err) {
        throw toConnectError(err);
      }
      if (slot === undefined) {
        throw new ConnectError(
          `too many open streams (${SETTINGS.maxStreamsPerIdentity.env} ${config.maxStreamsPerIdentity})`,
          Code.ResourceExhausted,
        );
      }
    }
    // Built outside this closure's scope: a closure made here would keep the whole scope, the
    // request and its body pipeline included, alive as long as the stream (bench/README.md,
    // memory per idle stream). Without a slot there is nothing to release and nothing to watch.
    const release = releaser(slot);
    try {
      const message =
        publishes && config.publishRatePerS > 0
          ? eachMessage(req.message, {
              each: async (m) => {
                await takeToken(who, req.signal);
                return m;
              },
            })
          : req.message;
      const res = await next({ ...req, message });
      if (!res.stream) {
        release();
        return res;
      }
      return slot === undefined
        ? res
        : { ...res, message: observeStream(res.message, { onEnd: release }) };
    } catch (err) {
      release();
      throw err;
    }
  };
}

/** Releases `slot` (if any) once: a function whose scope holds the slot and nothing else. */
function releaser(slot: StreamSlot | undefined): () => void {
  return () => slot?.release();
}
