import { monitorEventLoopDelay } from "node:perf_hooks";

/** One reading of a Telemetry source: what StreamMetrics sends, before labels and timestamps. */
export interface Sample {
  /** CPU time used by this process over the window, percent of one core. */
  cpuPercent: number;
  /** Resident set size, MiB. */
  rssMiB: number;
  /** Heap in use, MiB. */
  heapUsedMiB: number;
  /** RPCs started per second over the window. */
  requestsPerSecond: number;
  /** Messages stored and fanned out per second (JOIN and LEAVE included). */
  publishedPerSecond: number;
  /** Messages pushed to subscriber queues per second. */
  deliveredPerSecond: number;
  /** Event-loop delay over the last second, ms. */
  eventLoopDelayP50Ms: number;
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
  /** Open streams by RPC name (SubscribeMessages, Chat, …). */
  openStreams: Map<string, number>;
  /**
   * Set when the sample covers several processes (the primary and workers of WORKERS=N): the
   * machine's instance name (INSTANCE_ID or HOST:PORT, without a worker's `#N`) and how many
   * processes answered. CPU, memory, rates and open streams are then their sums, the
   * event-loop delays the worst worker's.
   */
  machine?: { instance: string; processes: number };
}

/**
 * One process's counts and state at one moment, for a machine's total (machine.ts): what a
 * {@link Sample} is computed from, with the counts cumulative.
 */
export interface ProcessReading {
  /** The process's instance name (a worker's ends in `#N`). */
  instance: string;
  /** performance.now() of that process, ms: only differences of one process's readings count. */
  atMs: number;
  /** User + system CPU time since the process started, µs. */
  cpuMicros: number;
  rssBytes: number;
  heapUsedBytes: number;
  requests: number;
  published: number;
  delivered: number;
  /** Event-loop delay over the last second, ms (0 for a process that serves no RPC). */
  delay: { p50: number; p99: number; max: number };
  openStreams: Record<string, number>;
}

/**
 * The process's counts, read where they are kept (plain numbers bumped on the hot paths:
 * RpcMetrics.started, Rooms.published, RoomHub's deliveries, …): the one source that StreamMetrics
 * ({@link Telemetry.reader}) and /metrics (ops/metrics.ts) both read, so both report one truth.
 * Made once, by {@link Telemetry}, from the sources app.ts wires.
 */
export interface Counters {
  /** RPCs started, every method and protocol, since start. */
  requests(): number;
  /** Messages stored and fanned out, since start (JOIN and LEAVE included). */
  published(): number;
  /** Messages pushed to subscriber queues, since start. */
  delivered(): number;
  /** Subscribers ended because their queue overflowed, since start. */
  slowConsumerDisconnects(): number;
  /** Live room subscribers on this process, every room. */
  subscribers(): number;
  /** Open streams by RPC name (SubscribeMessages, Chat, …). */
  openStreams(): ReadonlyMap<string, number>;
}

/** Where the counts Telemetry does not keep itself are read (all but the open streams). */
export type CountSources = Omit<Counters, "openStreams">;

/** Sampling period of the event-loop delay monitor, ms. */
const RESOLUTION_MS = 10;

interface Snapshot {
  atMs: number;
  cpu: NodeJS.CpuUsage;
  requests: number;
  published: number;
  delivered: number;
}

/**
 * Real measurements of this process for StreamMetrics: CPU and memory from `process`,
 * event-loop delay from `perf_hooks.monitorEventLoopDelay` (10 ms resolution, read and reset
 * every second), rates as deltas of cumulative counters over each reader's own window.
 */
export class Telemetry {
  readonly openStreams = new Map<string, number>();
  /** Every count of the process: the sources', and the open streams counted here. */
  readonly counters: Counters;
  private readonly histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private delay = { p50: 0, p99: 0, max: 0 };
  private readonly timer: NodeJS.Timeout;

  constructor(sources: CountSources) {
    this.counters = { ...sources, openStreams: () => this.openStreams };
    this.histogram.enable();
    this.timer = setInterval(() => {
      // The histogram records each timer's whole period; the delay is what exceeds it.
      const delayMs = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
      this.delay = {
        p50: delayMs(this.histogram.percentile(50)),
        p99: delayMs(this.histogram.percentile(99)),
        max: delayMs(this.histogram.max),
      };
      this.histogram.reset();
    }, 1000);
    this.timer.unref();
  }

  /** Counts an open stream of `rpc` until the returned function is called. */
  streamOpened(rpc: string): () => void {
    this.openStreams.set(rpc, (this.openStreams.get(rpc) ?? 0) + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      this.openStreams.set(rpc, (this.openStreams.get(rpc) ?? 1) - 1);
    };
  }

  /**
   * Where {@link Telemetry.reader} reads when set: the whole machine's processes instead of this
   * one (a worker of WORKERS=N; machine.ts).
   */
  machine: (() => () => Promise<Sample>) | undefined = undefined;

  /**
   * A reader of rates: each call returns the sample since the previous call (or since creation),
   * of this process, or of the whole machine when {@link Telemetry.machine} is set.
   */
  reader(): () => Promise<Sample> {
    if (this.machine !== undefined) return this.machine();
    const read = this.processReader();
    return async () => read();
  }

  /** This process's counts now, cumulative (machine.ts adds them up over the processes). */
  reading(instance: string): ProcessReading {
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    return {
      instance,
      atMs: performance.now(),
      cpuMicros: cpu.user + cpu.system,
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      requests: this.counters.requests(),
      published: this.counters.published(),
      delivered: this.counters.delivered(),
      delay: { ...this.delay },
      openStreams: Object.fromEntries(this.openStreams),
    };
  }

  /** A reader of this process's rates (see {@link Telemetry.reader}). */
  private processReader(): () => Sample {
    let previous = this.snapshot();
    return () => {
      const now = this.snapshot();
      const seconds = Math.max((now.atMs - previous.atMs) / 1000, 1e-3);
      const cpuMicros = now.cpu.user + now.cpu.system - previous.cpu.user - previous.cpu.system;
      const memory = process.memoryUsage();
      const sample: Sample = {
        cpuPercent: cpuMicros / 1e4 / seconds,
        rssMiB: memory.rss / 1_048_576,
        heapUsedMiB: memory.heapUsed / 1_048_576,
        requestsPerSecond: (now.requests - previous.requests) / seconds,
        publishedPerSecond: (now.published - previous.published) / seconds,
        deliveredPerSecond: (now.delivered - previous.delivered) / seconds,
        eventLoopDelayP50Ms: this.delay.p50,
        eventLoopDelayP99Ms: this.delay.p99,
        eventLoopDelayMaxMs: this.delay.max,
        openStreams: new Map(this.openStreams),
      };
      previous = now;
      return sample;
    };
  }

  close(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }

  private snapshot(): Snapshot {
    return {
      atMs: performance.now(),
      cpu: process.cpuUsage(),
      requests: this.counters.requests(),
      published: this.counters.published(),
      delivered: this.counters.delivered(),
    };
  }
}
