/**
 * What the log hears of a Redis outage: one event when it starts and one when it ends, not a
 * stack per reconnect attempt (node-redis reports every failed attempt, about every 2 s, and every
 * background task that needed Redis fails with it).
 */
export type OutageEvent =
  | {
      readonly state: "down";
      /** The first failure's message ("connect ECONNREFUSED 127.0.0.1:6379"). */
      readonly reason: string;
      /** What noticed it ("redis connection"). */
      readonly context: string;
    }
  | {
      readonly state: "up";
      /** How long Redis was unreachable, ms. */
      readonly durationMs: number;
      /** The failures during the outage that were not reported one by one. */
      readonly failures: number;
    };

/**
 * The contexts of connection errors (connection.ts, and feeds.ts' subscriber connections): these
 * start an outage.
 */
const CONNECTION_CONTEXTS = new Set([
  "redis connection",
  "redis cluster",
  "redis cluster node",
  "redis feed connection",
]);

/** How often an outage checks whether the client is ready again, ms. */
const CHECK_MS = 1_000;

/**
 * Turns the Redis store's background errors into outages: the first connection error starts one
 * (`down`), every error during it is counted instead of reported, and the client's next `ready`
 * ends it (`up`, with its duration), or, checked every second, the client found ready (a
 * subscriber connection that dropped alone). An error outside an outage that is not a
 * connection's (a failed sweep, a release) goes to `onError` as it is.
 */
export class OutageTracker {
  private since: number | undefined;
  private failures = 0;
  private check: ReturnType<typeof setInterval> | undefined;
  /** Whether the client can send now (set once it exists): an outage it outlived is ended. */
  isReady: () => boolean = () => false;

  constructor(
    private readonly onError: (err: unknown, context: string) => void,
    private readonly onOutage: (event: OutageEvent) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** A background error, with what it came from. */
  readonly error = (err: unknown, context: string): void => {
    if (this.since !== undefined && this.isReady()) this.ready();
    if (this.since !== undefined) {
      this.failures++;
      return;
    }
    if (CONNECTION_CONTEXTS.has(context)) {
      this.since = this.now();
      this.failures = 0;
      this.onOutage({ state: "down", reason: messageOf(err), context });
      this.check = setInterval(() => {
        if (this.isReady()) this.ready();
      }, CHECK_MS);
      this.check.unref();
      return;
    }
    this.onError(err, context);
  };

  /** The client is connected (again): ends the outage, if one is under way. */
  readonly ready = (): void => {
    if (this.since === undefined) return;
    this.stop();
    const durationMs = this.now() - this.since;
    const failures = this.failures;
    this.since = undefined;
    this.failures = 0;
    this.onOutage({ state: "up", durationMs, failures });
  };

  /** Stops checking whether the client is ready again (the store closes). */
  stop(): void {
    if (this.check !== undefined) clearInterval(this.check);
    this.check = undefined;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
