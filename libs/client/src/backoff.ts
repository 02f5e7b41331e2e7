/**
 * How long to wait between reconnection attempts: exponential with jitter, as in gRPC's
 * connection backoff (grpc/grpc doc/connection-backoff.md).
 */
export interface BackoffOptions {
  /** Delay before the first retry, in ms. Default 500. */
  initialMs: number;
  /** Largest delay, in ms, before jitter. Default 30 000. */
  maxMs: number;
  /** Factor between successive delays. Default 1.6 (gRPC's). */
  multiplier: number;
  /** Each delay is randomised by ± this fraction of itself, 0 to 1. Default 0.2 (gRPC's). */
  jitter: number;
}

/** A sequence of retry delays; {@link Backoff.reset} starts it again after a success. */
export interface Backoff {
  /** The next delay in ms, and advances the sequence. */
  next(): number;
  /** Starts again from `initialMs`. */
  reset(): void;
}

/** The defaults of {@link BackoffOptions}. */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = {
  initialMs: 500,
  maxMs: 30_000,
  multiplier: 1.6,
  jitter: 0.2,
};

/**
 * Creates an exponential backoff: `initialMs`, then × `multiplier` up to `maxMs`, each delay
 * spread by ± `jitter` so that clients cut off together do not reconnect together.
 *
 * @throws RangeError for a negative delay, a multiplier below 1, or jitter outside 0 to 1.
 */
export function createBackoff(
  options: Partial<BackoffOptions> = {},
  random: () => number = Math.random,
): Backoff {
  const { initialMs, maxMs, multiplier, jitter } = { ...DEFAULT_BACKOFF, ...options };
  if (!(initialMs >= 0) || !(maxMs >= initialMs)) {
    throw new RangeError("backoff needs 0 <= initialMs <= maxMs");
  }
  if (!(multiplier >= 1)) throw new RangeError("backoff multiplier must be at least 1");
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError("backoff jitter must be from 0 to 1");
  let current = initialMs;
  return {
    next() {
      const delay = current * (1 + jitter * (2 * random() - 1));
      current = Math.min(current * multiplier, maxMs);
      return Math.max(0, Math.round(delay));
    },
    reset() {
      current = initialMs;
    },
  };
}
