// The fan-out load's subscribers spread over worker threads (issue 19: at 5,000 and 10,000
// subscribers one thread reading every delivery adds tens of ms to every server's latency). Each
// worker owns a share of the HTTP/2 connections, with a SubscriberSet of its own
// (lib/fanout-worker.ts); the publisher stays on this thread. The workers count deliveries per
// subscriber in one shared array (so `delivered` and `missing` are read here at any moment),
// time them against the publisher's send times in shared memory on the one monotonic clock
// (lib/clock.ts), and hand their latency histograms back at the end of each step, where they
// are merged: every delivery to every subscriber is still timed, and a missed one still shows.

import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import { monotonicMs } from "./clock.js";
import {
  type FanoutSubscribers,
  generatorCores,
  type Publisher,
  type SubscriberOptions,
  SubscriberSet,
} from "./fanout-load.js";
import { sleep } from "./stats.js";

/** What each worker is given (workerData). */
export interface WorkerInit {
  /** The module the bootstrap imports (lib/fanout-worker.ts). */
  entry: string;
  url: string;
  options: SubscriberOptions;
  /** Shared delivery counts of every subscriber of the load; this worker's are a slice. */
  counts: SharedArrayBuffer;
  /** Shared progress, 3 per worker: welcomed, last activity (monotonicMs), all welcomed at. */
  status: SharedArrayBuffer;
  /** Index of this worker's first subscriber in `counts`. */
  countsOffset: number;
  /** This worker's index (its status slots). */
  index: number;
}

/** Requests to a worker and its answers (each answer carries the request's id). */
export type WorkerRequest =
  | { type: "begin"; id: number; times: SharedArrayBuffer; firstSeq: number }
  | { type: "end"; id: number }
  | { type: "close"; id: number };
export interface WorkerAnswer {
  id: number;
  /** At "end": the step's latency histogram (a live handle: merge it at once). */
  latency?: RecordableHistogram;
  /** At "end": streams ended so far, by grpc-status. */
  ended?: [string, number][];
  error?: string;
}

/** Slots per worker in the status array. */
export const STATUS_SLOTS = 3;

/**
 * How many worker threads read the subscribers when not told: one per core this process may use
 * (its CPU affinity), never more than there are connections; none (the publisher's own thread)
 * when it may use one core only, where a second thread adds a hop and no CPU.
 */
export function defaultThreads(connections: number, cores = generatorCores()): number {
  return cores <= 1 ? 0 : Math.max(1, Math.min(cores, connections));
}

/**
 * The subscribers of a fan-out load: in this thread (`threads` 0) or over worker threads;
 * `threads` undefined: defaultThreads().
 */
export function openSubscribers(
  url: string,
  options: SubscriberOptions,
  threads = defaultThreads(options.connections),
): FanoutSubscribers {
  return threads <= 0
    ? new SubscriberSet(url, options)
    : new ThreadedSubscribers(url, options, threads);
}

const BOOT = new URL("./ts-worker.mjs", import.meta.url);
const ENTRY = new URL("./fanout-worker.ts", import.meta.url).href;

/** Subscribers spread over `threads` worker threads, each owning a share of the connections. */
export class ThreadedSubscribers implements FanoutSubscribers {
  readonly threads: number;
  readonly latency: RecordableHistogram = createHistogram({
    lowest: 1,
    highest: 600_000_000,
    figures: 3,
  });
  /** Deliveries per subscriber since the step began, written by the workers. */
  readonly counts: Uint32Array;
  /** Streams that ended, by grpc-status, as of the last step's end. */
  ended = new Map<string, number>();
  readonly openedAt = monotonicMs();
  private readonly status: Float64Array;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<
    number,
    { resolve: (a: WorkerAnswer) => void; reject: (e: Error) => void }
  >();
  private nextId = 0;
  /** Set when a worker failed or exited unasked: every later call rejects with it. */
  private failure: Error | undefined;
  private closing = false;

  constructor(
    url: string,
    readonly options: SubscriberOptions,
    threads = defaultThreads(options.connections),
  ) {
    this.threads = Math.max(1, Math.min(threads, options.connections));
    const countsBuffer = new SharedArrayBuffer(4 * options.subscribers);
    this.counts = new Uint32Array(countsBuffer);
    const statusBuffer = new SharedArrayBuffer(8 * STATUS_SLOTS * this.threads);
    this.status = new Float64Array(statusBuffer);
    // Worker k takes its share of the connections and as large a share of the subscribers (a
    // contiguous range of indices, so its counts are one slice of the shared array), spread over
    // its connections as one SubscriberSet spreads them: every connection carries the same
    // number of streams (±1) as without threads.
    let first = 0;
    let connectionsLeft = options.connections;
    for (let k = 0; k < this.threads; k++) {
      const connections = Math.ceil(connectionsLeft / (this.threads - k));
      const share = Math.round((options.subscribers - first) * (connections / connectionsLeft));
      connectionsLeft -= connections;
      const init: WorkerInit = {
        entry: ENTRY,
        url,
        options: {
          ...options,
          subscribers: share,
          connections,
          firstIndex: (options.firstIndex ?? 0) + first,
        },
        counts: countsBuffer,
        countsOffset: first,
        status: statusBuffer,
        index: k,
      };
      first += share;
      const worker = new Worker(BOOT, { workerData: init });
      worker.on("message", (answer: WorkerAnswer) => {
        const waiting = this.pending.get(answer.id);
        if (waiting === undefined) return;
        this.pending.delete(answer.id);
        if (answer.error !== undefined) waiting.reject(new Error(answer.error));
        else waiting.resolve(answer);
      });
      worker.on("error", (err) => this.fail(new Error(`generator thread ${k}: ${err.message}`)));
      worker.on("exit", (code) => {
        if (!this.closing) this.fail(new Error(`generator thread ${k} exited (code ${code})`));
      });
      this.workers.push(worker);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const { reject } of this.pending.values()) reject(err);
    this.pending.clear();
  }

  /** Sends `request` (without its id) to every worker and waits for every answer. */
  private ask(
    request: WorkerRequest extends infer R ? (R extends unknown ? Omit<R, "id"> : never) : never,
  ): Promise<WorkerAnswer[]> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return Promise.all(
      this.workers.map(
        (worker) =>
          new Promise<WorkerAnswer>((resolve, reject) => {
            const id = ++this.nextId;
            this.pending.set(id, { resolve, reject });
            worker.postMessage({ ...request, id });
          }),
      ),
    );
  }

  get delivered(): number {
    let n = 0;
    for (const c of this.counts) n += c;
    return n;
  }

  /** Streams welcomed so far, every worker. */
  get welcomed(): number {
    let n = 0;
    for (let k = 0; k < this.threads; k++) n += this.status[k * STATUS_SLOTS] as number;
    return n;
  }

  /** monotonicMs() when the last stream was welcomed (NaN until every one is). */
  get allWelcomedAt(): number {
    let last = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < this.threads; k++)
      last = Math.max(last, this.status[k * STATUS_SLOTS + 2] as number);
    return this.welcomed === this.options.subscribers ? last : Number.NaN;
  }

  private get lastActivity(): number {
    let last = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < this.threads; k++)
      last = Math.max(last, this.status[k * STATUS_SLOTS + 1] as number);
    return last;
  }

  /**
   * Resets the counts and the histogram, then has every worker count and time the messages of
   * `publisher` numbered `firstSeq` and later; resolves once all of them do.
   */
  async beginStep(publisher: Publisher, firstSeq = publisher.seq): Promise<void> {
    this.latency.reset();
    this.counts.fill(0);
    await this.ask({ type: "begin", times: publisher.times.buffer, firstSeq });
  }

  /** Stops every worker's counting and merges their latency histograms into `latency`. */
  async endStep(): Promise<void> {
    const answers = await this.ask({ type: "end" });
    const ended = new Map<string, number>();
    for (const answer of answers) {
      // The histogram is a handle on the worker's own: merged before the next step resets it.
      if (answer.latency !== undefined) this.latency.add(answer.latency);
      for (const [status, n] of answer.ended ?? []) ended.set(status, (ended.get(status) ?? 0) + n);
    }
    this.ended = ended;
  }

  missing(sent: number): number {
    let n = 0;
    for (const c of this.counts) if (c < sent) n++;
    return n;
  }

  /**
   * Waits until every subscriber is welcomed and the JOIN storm has been delivered (1 s quiet).
   * @returns seconds it took.
   * @throws when not every subscriber is welcomed within `timeoutMs`, or a worker failed.
   */
  async settle(timeoutMs = 60_000): Promise<number> {
    const start = Date.now();
    while (
      (this.welcomed < this.options.subscribers || monotonicMs() - this.lastActivity < 1000) &&
      Date.now() - start < timeoutMs &&
      this.failure === undefined
    ) {
      await sleep(200);
    }
    if (this.failure !== undefined) throw this.failure;
    if (this.welcomed < this.options.subscribers)
      throw new Error(`only ${this.welcomed}/${this.options.subscribers} subscribed`);
    return (Date.now() - start) / 1000;
  }

  /** Closes every connection and ends the workers. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.failure === undefined) {
      await Promise.race([this.ask({ type: "close" }).catch(() => {}), sleep(5000)]);
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
