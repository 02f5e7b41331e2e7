import { SlowSubscriberError } from "./errors.js";

/**
 * A bounded FIFO between producers that must never block (fan-out, log lines, timers) and one
 * async consumer. Pushing never drops silently: when the queue already holds `limit` items it
 * ends with {@link SlowSubscriberError}, releases its items, and the consumer's next read throws.
 */
export class BoundedQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private head = 0;
  private waiter: (() => void) | undefined;
  private ended: { error: unknown } | "closed" | undefined;

  constructor(private readonly limit: number) {}

  /** Items waiting to be read. */
  get backlog(): number {
    return this.items.length - this.head;
  }

  /** True once the queue overflowed or was ended. */
  get isEnded(): boolean {
    return this.ended !== undefined;
  }

  /**
   * Queues an item for the consumer; ignored once the queue has ended.
   * @returns false when this push overflowed the queue (the queue is now ended).
   */
  push(item: T): boolean {
    if (this.ended !== undefined) return true;
    if (this.items.length - this.head >= this.limit) {
      this.end(new SlowSubscriberError(this.limit));
      return false;
    }
    this.items.push(item);
    this.wake();
    return true;
  }

  /**
   * Ends the queue: the consumer reads what is queued and then stops, or, with `error` (any
   * value but undefined), throws it at once and the queued items are released.
   */
  end(error?: unknown): void {
    if (this.ended !== undefined) return;
    this.ended = error === undefined ? "closed" : { error };
    if (error !== undefined) {
      this.items = [];
      this.head = 0;
    }
    this.wake();
  }

  /**
   * Ends the queue with `signal`'s reason (a call's cancel, deadline or shutdown) when it
   * aborts, at once if it has.
   * @returns a function that stops watching the signal.
   */
  endOnAbort(signal: AbortSignal): () => void {
    const abort = () => this.end(signal.reason ?? new Error("aborted"));
    if (signal.aborted) {
      abort();
      return () => {};
    }
    signal.addEventListener("abort", abort, { once: true });
    return () => signal.removeEventListener("abort", abort);
  }

  /**
   * Waits for at least one item, then takes up to `max` queued items at once, in order: the
   * batch read of a consumer that writes many items in one go (the fan-out writer). Resolves
   * undefined once the queue was ended and is empty. Taken items no longer count as backlog.
   *
   * @throws the queue's error (SlowSubscriberError, or the error given to `end`) once it ended
   *   with one.
   */
  async take(max = Number.POSITIVE_INFINITY): Promise<T[] | undefined> {
    for (;;) {
      const batch = this.poll(max);
      if (batch !== undefined) return batch ?? undefined;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  /**
   * {@link take} without waiting: up to `max` queued items at once, in order (never empty); null
   * once the queue was ended and is empty; undefined when nothing is queued yet (then
   * {@link onReady} says when to poll again). A consumer that reads this way keeps no promise
   * or suspended function while it waits.
   *
   * @throws as {@link take}.
   */
  poll(max = Number.POSITIVE_INFINITY): T[] | null | undefined {
    const queued = this.items.length - this.head;
    if (queued > 0) {
      if (this.head === 0 && queued <= max) {
        const batch = this.items;
        this.items = [];
        return batch;
      }
      const end = this.head + Math.min(queued, max);
      const batch = this.items.slice(this.head, end);
      if (end === this.items.length) {
        this.items = [];
        this.head = 0;
      } else {
        this.head = end;
      }
      return batch;
    }
    if (this.ended === undefined) return undefined;
    if (this.ended === "closed") return null;
    throw this.ended.error;
  }

  /**
   * Calls `ready` once, synchronously, at the next push or end (at once when an item is queued
   * or the queue has ended): {@link poll} then returns something. One consumer: it replaces a
   * `ready` given before, and a waiting {@link take}.
   */
  onReady(ready: () => void): void {
    if (this.items.length > this.head || this.ended !== undefined) ready();
    else this.waiter = ready;
  }

  private wake(): void {
    const waiter = this.waiter;
    if (waiter !== undefined) {
      this.waiter = undefined;
      waiter();
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.head < this.items.length) {
        const item = this.items[this.head] as T;
        this.items[this.head] = undefined as T;
        this.head++;
        // Compact now and then so the array does not grow without bound.
        if (this.head >= 1024 && this.head * 2 >= this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        yield item;
        continue;
      }
      if (this.ended !== undefined) {
        if (this.ended === "closed") return;
        throw this.ended.error;
      }
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }
}
