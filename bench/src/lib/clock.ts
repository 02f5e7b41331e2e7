// One clock for every thread of the load generator. performance.now() counts from each thread's
// own time origin (a worker thread's starts when the worker does), so a publish time taken on the
// main thread and a receive time taken on a worker cannot be subtracted. This clock is
// performance.now() shifted onto the process's monotonic clock (process.hrtime, CLOCK_MONOTONIC,
// the same in every thread): milliseconds, as precise as performance.now(), comparable across
// threads. (performance.timeOrigin is wall-clock time and may be slewed between the two origins.)

/** performance.now() + this = milliseconds on the monotonic clock, in this thread. */
const OFFSET_MS = Number(process.hrtime.bigint()) / 1e6 - performance.now();

/** Milliseconds on the process's monotonic clock: the same value in every thread at one instant. */
export function monotonicMs(): number {
  return performance.now() + OFFSET_MS;
}
