import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { eachMessage } from "../policy/each-message.js";
import { policyOf } from "../policy/method-policy.js";
import { identityKey } from "./auth.js";
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
 * A token bucket (Turner, 1986): holds up to `burst` tokens, refills `ratePerS` per second; each
 * publish takes one.
 */
export class TokenBucket {
  private tokens: number;
  private updatedMs: number;

  constructor(
    private readonly ratePerS: number,
    private readonly burst: number,
    nowMs = performance.now(),
  ) {
    this.tokens = burst;
    this.updatedMs = nowMs;
  }

  /** Takes a token: 0 when one was available, else the ms to wait until one will be. */
  take(nowMs = performance.now()): number {
    this.tokens = Math.min(
      this.burst,
      this.tokens + ((nowMs - this.updatedMs) / 1000) * this.ratePerS,
    );
    this.updatedMs = nowMs;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.ratePerS) * 1000);
  }

  /** Whether the bucket is full, i.e. forgetting it changes nothing. */
  full(nowMs = performance.now()): boolean {
    return this.tokens + ((nowMs - this.updatedMs) / 1000) * this.ratePerS >= this.burst;
  }
}

/** Buckets kept before full (idle) ones are forgotten. */
const PRUNE_AT = 10_000;

/**
 * Per-identity limits as a Connect interceptor, after authentication: the identity is the
 * token's `sub`, or the peer's IP address when authentication is off. Publishing faster than the
 * token bucket allows fails with ResourceExhausted "publish rate exceeded; retry in N ms" (and
 * `retry-after-ms: N` in the error metadata); which calls publish, and how many messages each,
 * is the method's row (`publishes` in policy/method-policy.ts): a unary call one, a client or
 * bidi stream one per message. Opening more than `maxStreamsPerIdentity` streams fails with
 * ResourceExhausted. The open methods (health and reflection) are not limited.
 */
export function createLimitsInterceptor(config: LimitsConfig): Interceptor {
  const buckets = new Map<string, TokenBucket>();
  const streams = new Map<string, number>();
  const takeToken = (who: string) => {
    if (config.publishRatePerS <= 0) return;
    let bucket = buckets.get(who);
    if (bucket === undefined) {
      if (buckets.size >= PRUNE_AT) {
        for (const [key, b] of buckets) if (b.full()) buckets.delete(key);
      }
      bucket = new TokenBucket(config.publishRatePerS, Math.max(1, config.publishBurst));
      buckets.set(who, bucket);
    }
    const waitMs = bucket.take();
    if (waitMs > 0) {
      throw new ConnectError(
        `publish rate exceeded (${config.publishRatePerS}/s); retry in ${waitMs} ms`,
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
      if (publishes) takeToken(who);
      return next(req);
    }
    const open = streams.get(who) ?? 0;
    if (config.maxStreamsPerIdentity > 0 && open >= config.maxStreamsPerIdentity) {
      throw new ConnectError(
        `too many open streams (the limit is ${config.maxStreamsPerIdentity})`,
        Code.ResourceExhausted,
      );
    }
    streams.set(who, open + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const n = (streams.get(who) ?? 1) - 1;
      if (n > 0) streams.set(who, n);
      else streams.delete(who);
    };
    try {
      const message = publishes
        ? eachMessage(req.message, {
            each: (m) => {
              takeToken(who);
              return m;
            },
          })
        : req.message;
      const res = await next({ ...req, message });
      if (!res.stream) {
        release();
        return res;
      }
      return { ...res, message: observeStream(res.message, { onEnd: release }) };
    } catch (err) {
      release();
      throw err;
    }
  };
}
