/** Work run per event-loop turn before the loop polls for I/O again, ms (one task may overrun it). */
export const TURN_BUDGET_MS = 20;

/**
 * The budget of a turn right after a connection was accepted, ms. libuv (since 1.45) accepts one
 * connection per event-loop turn, so the rate at which a burst of connections leaves the kernel's
 * accept queue is the rate at which the loop turns; while connections keep coming, turns stay
 * this short and starts wait (at most one per {@link TURN_BUDGET_MS}).
 */
export const ACCEPTING_BUDGET_MS = 1;

/**
 * Work one key may run per visit, ms: its answers then leave in one write (node:http2 writes a
 * session's pending frames together, once per turn) instead of one write per request.
 */
export const KEY_QUANTUM_MS = 2;

/**
 * Work deferred to the check phase and run in bounded, fair slices, so that the event loop turns
 * every few milliseconds however much work a burst brings.
 *
 * Why: 1,000 h2c connections with 100 streams each, read in one poll, made 100,000 streams and as
 * many deferred requests, and the loop ran them all in one iteration: 30–100 s on a loaded 2-core
 * machine, during which no answer was written (node:http2 writes at the next turn), no timer ran
 * and no new request, /metrics included, was read. Run in slices, the loop turns every
 * ~`budgetMs`: answers go out as they are made, deadlines run on time, and a connection that
 * arrives during the burst is served in milliseconds (an HTTP/1.1 request is not deferred; a new
 * h2c connection's first request gets its turn within a round). The total work is the same.
 *
 * Accepting comes first: a turn right after a connection was accepted ({@link accepted}) has a
 * budget of {@link ACCEPTING_BUDGET_MS}, since libuv accepts one connection per turn. A burst of
 * 1,000 connections otherwise waited in the kernel's accept queue for 1,000 full turns, and so did
 * a /metrics scrape, or any client, that came after it.
 *
 * Two kinds of work:
 * - {@link defer}: a task of a key (a request of a connection), run round robin over keys, each
 *   key's tasks in order, up to `quantumMs` of them per visit (deficit round robin by time, without
 *   the deficit): a key with tasks left goes to the back, so a connection with 100 requests delays
 *   a new one by at most one round. Tasks run until the turn's budget is spent.
 * - {@link start}: a task that begins more work than it does itself (a new h2c session: node:http2
 *   parses the frames it has read on the next tick, which runs only after the turn's tasks). One
 *   per turn, after the turn's other tasks, so its follow-up work counts in that turn; started
 *   connections' requests go on meanwhile, so the first answers go out while later connections
 *   are still being started.
 */
export class TurnScheduler {
  /** Pending tasks by key; the Map's insertion order is the round-robin order. */
  private readonly queues = new Map<object, (() => void)[]>();
  private readonly starts: (() => void)[] = [];
  private scheduled = false;
  /** performance.now() at which the current turn's budget is spent. */
  private turnEnd = 0;
  /** A connection was accepted since the last turn began. */
  private accepting = false;
  /** Whether the current turn may run a start. */
  private startAllowed = true;
  /** performance.now() when the last start ran. */
  private lastStart = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly budgetMs = TURN_BUDGET_MS,
    private readonly quantumMs = KEY_QUANTUM_MS,
  ) {}

  /** Tasks waiting, of both kinds. */
  get pending(): number {
    let n = this.starts.length;
    for (const queue of this.queues.values()) n += queue.length;
    return n;
  }

  /** Runs `task` in a later turn, after the tasks deferred before it for the same key. */
  defer(key: object, task: () => void): void {
    const queue = this.queues.get(key);
    if (queue === undefined) this.queues.set(key, [task]);
    else queue.push(task);
    this.schedule();
  }

  /** Runs `task` last in a later turn, one such task per turn, in order. */
  start(task: () => void): void {
    this.starts.push(task);
    this.schedule();
  }

  /**
   * A connection was accepted (the listening socket's `connection` event): the next turn is
   * short, so that the loop comes back to accept the next one.
   */
  accepted(): void {
    this.accepting = true;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.run);
  }

  /**
   * A new turn (the check phase): visits keys until the budget is spent, then one start (while
   * connections are being accepted: only if none ran for a full budget).
   */
  private readonly run = (): void => {
    this.scheduled = false;
    const now = performance.now();
    const accepting = this.accepting;
    this.accepting = false;
    this.turnEnd = now + (accepting ? ACCEPTING_BUDGET_MS : this.budgetMs);
    this.startAllowed = !accepting || now - this.lastStart >= this.budgetMs;
    this.visit();
  };

  /**
   * One key's quantum of tasks; the next visit is queued as a microtask, behind the promise
   * continuations those tasks queued (a request's handler goes on in them), so that the budget
   * counts that work too, not only the tasks' synchronous part.
   */
  private readonly visit = (): void => {
    const now = performance.now();
    const next = this.queues.entries().next();
    if (next.done === true || now >= this.turnEnd) {
      try {
        if (this.startAllowed && this.starts.length > 0) {
          this.lastStart = performance.now();
          this.starts.shift()?.();
        }
      } finally {
        // What is left waits for the next turn, after a poll (also when a task threw).
        if (this.queues.size > 0 || this.starts.length > 0) this.schedule();
      }
      return;
    }
    const [key, queue] = next.value;
    // The key leaves, and comes back at the end if it has tasks left.
    this.queues.delete(key);
    const visitEnd = Math.min(this.turnEnd, now + this.quantumMs);
    try {
      do (queue.shift() as () => void)();
      while (queue.length > 0 && performance.now() < visitEnd);
    } finally {
      if (queue.length > 0) this.queues.set(key, queue);
      queueMicrotask(this.visit);
    }
  };
}
