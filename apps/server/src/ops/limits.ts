import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { eachMessage } from "../policy/each-message.js";
import { policyOf } from "../policy/method-policy.js";
import { toConnectError } from "../services/errors.js";
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

/** An open stream counted against its identity's cap; released once, when the stream ends. */
export interface StreamSlot {
  /** Gives the slot back (a second call does nothing). Never throws. */
  release(): void;
}

/**
 * Where the per-identity limits are counted: {@link LocalLimitCounter} in this process (the
 * embedded stores served by one process), by the primary of WORKERS=N on SQLite for every worker
 * (store/sqlite/worker-limits.ts, which asks it), or in Redis (store/redis/limits.ts), shared by
 * every node and worker on it. The limits are arguments, so
 * that one counter serves any configuration; callers do not call it for a limit that is off.
 */
export interface LimitCounter {
  /**
   * Takes one publish token from `identity`'s token bucket (`burst` tokens, refilled at
   * `ratePerS` per second).
   * @returns 0 when a token was taken; else the ms to wait until one will be (nothing is taken).
   * @throws StoreUnavailableError when a shared counter cannot be reached; the signal's reason
   *   once it is aborted.
   */
  takePublishToken(
    identity: string,
    ratePerS: number,
    burst: number,
    signal?: AbortSignal,
  ): Promise<number>;
  /**
   * Opens a stream slot for `identity` if it has fewer than `max` open.
   * @returns the slot, or undefined when the identity already has `max` (nothing is taken).
   * @throws as {@link LimitCounter.takePublishToken}.
   */
  acquireStream(
    identity: string,
    max: number,
    signal?: AbortSignal,
  ): Promise<StreamSlot | undefined>;
  /** Stops background work (a shared counter gives back the slots it holds). */
  close(): Promise<void>;
}

/** Buckets kept before full (idle) ones are forgotten. */
const PRUNE_AT = 10_000;

/**
 * The limits counted in this process: one {@link TokenBucket} and one open-stream count per
 * identity, in memory. Each process that counts on its own allows the whole limits, so the
 * processes that share a store count elsewhere: with WORKERS=N on SQLite the primary keeps one
 * of these for every worker (store/sqlite/coordinator.ts), and the Redis store shares its
 * counter between nodes (store/redis/limits.ts).
 */
export class LocalLimitCounter implements LimitCounter {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly streams = new Map<string, number>();

  async takePublishToken(identity: string, ratePerS: number, burst: number): Promise<number> {
    let bucket = this.buckets.get(identity);
    if (bucket === undefined) {
      if (this.buckets.size >= PRUNE_AT) {
        for (const [key, b] of this.buckets) if (b.full()) this.buckets.delete(key);
      }
      bucket = new TokenBucket(ratePerS, burst);
      this.buckets.set(identity, bucket);
    }
    return bucket.take();
  }

  async acquireStream(identity: string, max: number): Promise<StreamSlot | undefined> {
    const open = this.streams.get(identity) ?? 0;
    if (open >= max) return undefined;
    this.streams.set(identity, open + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const n = (this.streams.get(identity) ?? 1) - 1;
        if (n > 0) this.streams.set(identity, n);
        else this.streams.delete(identity);
      },
    };
  }

  async close(): Promise<void> {}
}

/**
 * Per-identity limits as a Connect interceptor, after authentication: the identity is the
 * token's `sub`, or the peer's IP address when authentication is off. Publishing faster than the
 * token bucket allows fails with ResourceExhausted "publish rate exceeded; retry in N ms" (and
 * `retry-after-ms: N` in the error metadata); which calls publish, and how many messages each,
 * is the method's row (`publishes` in policy/method-policy.ts): a unary call one, a client or
 * bidi stream one per message. Opening more than `maxStreamsPerIdentity` streams fails with
 * ResourceExhausted. The open methods (health and reflection) are not limited.
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
          `too many open streams (the limit is ${config.maxStreamsPerIdentity})`,
          Code.ResourceExhausted,
        );
      }
    }
    const release = () => slot?.release();
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
      return { ...res, message: observeStream(res.message, { onEnd: release }) };
    } catch (err) {
      release();
      throw err;
    }
  };
}
