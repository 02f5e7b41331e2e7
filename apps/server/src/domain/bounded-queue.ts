/** The queue's consumer fell more than its limit behind; what was queued was released. */
export class QueueOverflowError extends Error {
  override name = "QueueOverflowError";
}

/**
 * A bounded FIFO between producers that must never block (fan-out, log lines, timers) and one
 * async consumer. Pushing never drops silently: when the queue already holds `limit` items it
 * ends with {@link QueueOverflowError}, releases its items, and the consumer's next read throws.
 */
export class BoundedQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private head = 0;
  private waiter: (() => void) | undefined;
  private ended: Error | "closed" | undefined;

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
      this.end(new QueueOverflowError(`more than ${this.limit} items behind`));
      return false;
    }
    this.items.push(item);
    this.wake();
    return true;
  }

  /**
   * Ends the queue: the consumer reads what is queued and then stops, or, with `error`, throws
   * it at once. An overflow error releases the queued items.
   */
  end(error?: Error): void {
    if (this.ended !== undefined) return;
    this.ended = error ?? "closed";
    if (error !== undefined) {
      this.items = [];
      this.head = 0;
    }
    this.wake();
  }

  /**
   * Waits for at least one item, then takes up to `max` queued items at once, in order: the
   * batch read of a consumer that writes many items in one go (the fan-out writer). Resolves
   * undefined once the queue was ended and is empty. Taken items no longer count as backlog.
   *
   * @throws the queue's error (QueueOverflowError, or the error given to `end`) once it ended
   *   with one.
   */
  async take(max = Number.POSITIVE_INFINITY): Promise<T[] | undefined> {
    for (;;) {
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
      if (this.ended !== undefined) {
        if (this.ended === "closed") return undefined;
        throw this.ended;
      }
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
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
        throw this.ended;
      }
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }
}
