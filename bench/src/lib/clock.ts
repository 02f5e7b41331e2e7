// One clock for every thread of the load generator: a publish time taken on the main thread and
// a receive time taken on a worker thread are subtracted. Node 24 gives worker threads the
// process's time origin, so performance.now() already agrees across threads; this clock does
// not depend on that (older Node versions started a worker's origin with the worker): it is
// performance.now() shifted onto the process's monotonic clock (process.hrtime, CLOCK_MONOTONIC,
// the same in every thread). Milliseconds, as precise as performance.now(). (performance.timeOrigin
// + performance.now() would be wall-clock time, which NTP may slew between two readings.)

/** performance.now() + this = milliseconds on the monotonic clock, in this thread. */
const OFFSET_MS = Number(process.hrtime.bigint()) / 1e6 - performance.now();

/** Milliseconds on the process's monotonic clock: the same value in every thread at one instant. */
export function monotonicMs(): number {
  return performance.now() + OFFSET_MS;
}
