import type { PrimaryLink, WorkerLinks } from "../cluster-channel.js";
import type { ProcessReading, Sample, Telemetry } from "./telemetry.js";

/** How long the primary waits for a worker's reading, ms: a busy or dying worker is left out. */
const READING_TIMEOUT_MS = 1_000;

/**
 * In a worker of WORKERS=N: answers the primary's requests for this process's reading, and makes
 * `telemetry`'s readers (StreamMetrics) read the whole machine: every worker and the primary.
 * `instance` is this worker's name (`HOST:PORT#N`); the machine's is the same without `#N`.
 */
export function shareMachineTelemetry(
  link: PrimaryLink,
  telemetry: Telemetry,
  instance: string,
): void {
  link.on("telemetry.reading", () => telemetry.reading(instance));
  const machine = instance.replace(/#\d+$/, "");
  telemetry.machine = () => machineReader(link, machine);
}

/**
 * In the primary of WORKERS=N: answers a worker's `telemetry.machine` with the reading of every
 * worker that answers within a second, and the primary's own (CPU and memory; it serves no RPC).
 */
export function serveMachineTelemetry(links: WorkerLinks, instance: string): void {
  links.on("telemetry.machine", async () => {
    const readings = await Promise.all(
      links
        .workers()
        .map((worker) =>
          links
            .request<ProcessReading>(worker, "telemetry.reading", undefined, READING_TIMEOUT_MS)
            .catch(() => undefined),
        ),
    );
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    const primary: ProcessReading = {
      instance,
      atMs: performance.now(),
      cpuMicros: cpu.user + cpu.system,
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      requests: 0,
      published: 0,
      delivered: 0,
      delay: { p50: 0, p99: 0, max: 0 },
      openStreams: {},
    };
    return [primary, ...readings.filter((r) => r !== undefined)];
  });
}

/**
 * A reader of the machine's rates: each call asks the primary for every process's reading and
 * returns the sample since the previous call. Rates and CPU are summed over the processes read
 * both times (a worker that restarted in between counts from its next reading on), memory and
 * open streams over the processes read now, event-loop delays are the worst process's.
 */
function machineReader(link: PrimaryLink, instance: string): () => Promise<Sample> {
  let previous = link.request<ProcessReading[]>("telemetry.machine").catch(() => []);
  return async () => {
    const before = new Map((await previous).map((r) => [r.instance, r]));
    const now = link.request<ProcessReading[]>("telemetry.machine");
    previous = now.catch(() => []);
    const readings = await now;
    const sample: Sample = {
      cpuPercent: 0,
      rssMiB: 0,
      heapUsedMiB: 0,
      requestsPerSecond: 0,
      publishedPerSecond: 0,
      deliveredPerSecond: 0,
      eventLoopDelayP50Ms: 0,
      eventLoopDelayP99Ms: 0,
      eventLoopDelayMaxMs: 0,
      openStreams: new Map(),
      machine: { instance, processes: readings.length },
    };
    for (const r of readings) {
      sample.rssMiB += r.rssBytes / 1_048_576;
      sample.heapUsedMiB += r.heapUsedBytes / 1_048_576;
      sample.eventLoopDelayP50Ms = Math.max(sample.eventLoopDelayP50Ms, r.delay.p50);
      sample.eventLoopDelayP99Ms = Math.max(sample.eventLoopDelayP99Ms, r.delay.p99);
      sample.eventLoopDelayMaxMs = Math.max(sample.eventLoopDelayMaxMs, r.delay.max);
      for (const [rpc, n] of Object.entries(r.openStreams)) {
        sample.openStreams.set(rpc, (sample.openStreams.get(rpc) ?? 0) + n);
      }
      const b = before.get(r.instance);
      if (b === undefined) continue;
      const seconds = Math.max((r.atMs - b.atMs) / 1000, 1e-3);
      sample.cpuPercent += (r.cpuMicros - b.cpuMicros) / 1e4 / seconds;
      sample.requestsPerSecond += (r.requests - b.requests) / seconds;
      sample.publishedPerSecond += (r.published - b.published) / seconds;
      sample.deliveredPerSecond += (r.delivered - b.delivered) / seconds;
    }
    return sample;
  };
}
