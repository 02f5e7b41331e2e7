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
