// Preloaded into every Node server under test (`node --import tsx --import <this file>`), so that
// each one reports the same figures, measured the same way: the event loop's delay and the
// garbage collector's pauses since the last read. The runner asks over the IPC channel that
// lib/servers.ts opens ({ type: PROBE_REQUEST }); the answer is a {@link ProbeReading}.
//
// - Event-loop delay: perf_hooks.monitorEventLoopDelay (libuv timer, 10 ms resolution, as
//   prom-client's default collector samples it), reset on every read: max/p99 are since the
//   previous read.
// - GC: a PerformanceObserver('gc') counting every entry of every batch. (prom-client's
//   nodejs_gc_duration_seconds observes only the first entry of each batch the observer delivers,
//   so it undercounts when several collections happen between two turns of the event loop.)
// - Live heap, on request only ({ type: PROBE_HEAP_REQUEST }): process.memoryUsage(), two full
//   garbage collections, process.memoryUsage() again. The collector is reached through V8's
//   --expose-gc flag set at that moment (v8.setFlagsFromString, then `gc` from a new context), so
//   a server runs with its usual flags until the runner asks.
import cluster from "node:cluster";
import {
  constants,
  monitorEventLoopDelay,
  type PerformanceEntry,
  PerformanceObserver,
} from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** The message the runner sends to ask for a reading. */
export const PROBE_REQUEST = "bench-probe:request";
/** The answer's type. */
export const PROBE_READING = "bench-probe:reading";

/** One reading: loop delay since the previous reading, GC totals since start. */
export interface ProbeReading {
  type: typeof PROBE_READING;
  id: number;
  /** Largest event-loop delay since the previous reading, ms (NaN when not sampled yet). */
  loopMaxMs: number;
  /** 99th percentile of the event-loop delay since the previous reading, ms. */
  loopP99Ms: number;
  /** Collections since start, every kind. */
  gcCount: number;
  /** Time in GC pauses since start, ms, every kind. */
  gcMs: number;
  /** Of which major (mark-compact) collections, ms. */
  gcMajorMs: number;
  /** Longest single GC pause since the previous reading, ms. */
  gcMaxPauseMs: number;
}

/** The message the runner sends to ask for the live heap (forces two full GCs). */
export const PROBE_HEAP_REQUEST = "bench-probe:heap-request";
/** Its answer's type. */
export const PROBE_HEAP_READING = "bench-probe:heap-reading";

/** process.memoryUsage() before and after two forced full garbage collections. */
export interface HeapReading {
  type: typeof PROBE_HEAP_READING;
  id: number;
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  /** How long the two collections took, ms. */
  gcMs: number;
}

/** Set by lib/servers.ts in the environment of the servers it starts: only they answer. */
export const PROBE_ENV = "BENCH_SERVER_PROBE";

// Only in the process the runner started (with WORKERS=N, the primary: a cluster worker's channel
// is the cluster's, and the runner does not ask the workers).
if (process.env[PROBE_ENV] === "1" && typeof process.send === "function" && !cluster.isWorker) {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let gcCount = 0;
  let gcMs = 0;
  let gcMajorMs = 0;
  let gcMaxPauseMs = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcCount++;
      gcMs += entry.duration;
      if (entry.duration > gcMaxPauseMs) gcMaxPauseMs = entry.duration;
      const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gcMajorMs += entry.duration;
    }
  }).observe({ entryTypes: ["gc"] });
  let gc: (() => void) | undefined;
  process.on("message", (message: { type?: unknown; id?: unknown }) => {
    if (message?.type === PROBE_HEAP_REQUEST && typeof message.id === "number") {
      if (gc === undefined) {
        setFlagsFromString("--expose-gc");
        gc = runInNewContext("gc") as () => void;
      }
      const before = process.memoryUsage();
      const start = performance.now();
      gc();
      gc();
      const gcMs = performance.now() - start;
      const heap: HeapReading = {
        type: PROBE_HEAP_READING,
        id: message.id,
        before,
        after: process.memoryUsage(),
        gcMs,
      };
      process.send?.(heap);
      return;
    }
    if (message?.type !== PROBE_REQUEST || typeof message.id !== "number") return;
    const reading: ProbeReading = {
      type: PROBE_READING,
      id: message.id,
      loopMaxMs: loop.count === 0 ? Number.NaN : loop.max / 1e6,
      loopP99Ms: loop.count === 0 ? Number.NaN : loop.percentile(99) / 1e6,
      gcCount,
      gcMs,
      gcMajorMs,
      gcMaxPauseMs,
    };
    loop.reset();
    gcMaxPauseMs = 0;
    process.send?.(reading);
  });
  // The channel must not keep a server alive on its own.
  process.channel?.unref();
}
