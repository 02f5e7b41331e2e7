// Scenario 3, idle streams: resident memory (VmRSS) per idle SubscribeMessages stream and the time
// to open them, at each count in a fresh server process (one process, no workers). Streams are
// 100 per HTTP/2 connection (100,000 streams: 1,000 connections on each side; the runner raises
// its open-file limit, lib/servers.ts), all requested at once by the raw burst client
// (lib/h2c-burst.ts): every connection writes its preface and its 100 requests the moment it
// connects. A point is (RSS with N idle streams − RSS of the same process before any) / N, read
// after every stream was welcomed and the server went quiet. Beside it: the connections that
// closed (client side; and for Switchboard, its /metrics close reasons) and, for Switchboard,
// whether and how fast /metrics answered during the burst (lib/metrics-watch.ts); and the live heap
// per stream, the same difference of V8's heap used after two forced full GCs (lib/server-probe.ts;
// read after RSS, Node servers only).
import { StreamBurst } from "../lib/h2c-burst.js";
import { loadNow } from "../lib/machine.js";
import { closedByReason, MetricsWatch } from "../lib/metrics-watch.js";
import type { MemoryPoint, MemoryRun } from "../lib/results.js";
import {
  type RunningServer,
  type ServerKind,
  type StartOptions,
  startServer,
} from "../lib/servers.js";
import { median, sleep } from "../lib/stats.js";

export interface MemoryOptions {
  servers: ServerKind[];
  streamCounts: number[];
  repetitions: number;
  start: StartOptions;
  log: (line: string) => void;
}

/** Idle streams per HTTP/2 connection. */
const STREAMS_PER_CONNECTION = 100;

/** The median of three RSS reads 300 ms apart (GC makes single reads jumpy). */
async function steadyRss(read: () => number): Promise<number> {
  const reads: number[] = [];
  for (let i = 0; i < 3; i++) {
    reads.push(read());
    await sleep(300);
  }
  return median(reads);
}

/** Switchboard's close counts by reason now. */
async function closedNow(url: string): Promise<Record<string, number>> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(600_000) });
  return closedByReason(await res.text());
}

/** Streams as a burst of connections of up to 100 streams each. */
function burstOf(url: string, streams: number, room: string): StreamBurst {
  const perConnection = Math.min(STREAMS_PER_CONNECTION, streams);
  return new StreamBurst(url, {
    connections: Math.ceil(streams / perConnection),
    streamsPerConnection: perConnection,
    room,
    user: "subscriber",
  });
}

/** Opens `streams` idle streams on a fresh server and measures them. */
async function measurePoint(running: RunningServer, streams: number): Promise<MemoryPoint> {
  const own = running.kind === "switchboard" || running.kind === "switchboard-sqlite";
  // Warm-up: one stream opened and closed, so lazily loaded code is counted in the baseline.
  const warm = burstOf(running.url, 1, "warm-up");
  await warm.settle(30_000);
  warm.close();
  await sleep(1500);
  const baselineRss = await steadyRss(running.rss);
  const baselineHeap = await running.heap();
  const closedBefore = own ? await closedNow(running.url) : undefined;
  const watch = own ? new MetricsWatch(running.url) : undefined;
  const burst = burstOf(running.url, streams, "idle");
  try {
    // Generous: a server that opens 500 streams/s still gets there.
    await burst.settle(Math.max(120_000, streams * 2));
    const metrics = await watch?.stop();
    const error =
      burst.welcomed < streams ? `only ${burst.welcomed}/${streams} subscribed` : undefined;
    let serverClosed: Record<string, number> | undefined;
    if (closedBefore !== undefined) {
      serverClosed = {};
      for (const [reason, n] of Object.entries(await closedNow(running.url))) {
        // `peer`: closed by a client (the scrapes' own connection among them), not the server.
        const delta = n - (closedBefore[reason] ?? 0);
        if (delta > 0 && reason !== "peer") serverClosed[reason] = delta;
      }
    }
    await sleep(1500);
    const rss = await steadyRss(running.rss);
    const heap = await running.heap();
    const heapUsed = heap?.after.heapUsed;
    const baselineHeapUsed = baselineHeap?.after.heapUsed;
    return {
      streams,
      opened: burst.welcomed,
      ended: burst.endedTotal,
      rss,
      baselineRss,
      bytesPerStream: (rss - baselineRss) / Math.max(1, burst.welcomed),
      openSeconds: (burst.allWelcomedAt - burst.openedAt) / 1000,
      connectionsClosed: Object.fromEntries(burst.connectionsClosed),
      ...(serverClosed === undefined ? {} : { serverClosed }),
      ...(metrics === undefined
        ? {}
        : {
            metricsDuringBurst: {
              scrapes: metrics.scrapes.length,
              answered: metrics.answered,
              maxMs: metrics.maxMs,
              p50Ms: metrics.p50Ms,
            },
          }),
      ...(heapUsed === undefined || baselineHeapUsed === undefined
        ? {}
        : {
            heapUsed,
            baselineHeapUsed,
            heapBytesPerStream: (heapUsed - baselineHeapUsed) / Math.max(1, burst.welcomed),
          }),
      ...(error === undefined ? {} : { error }),
    };
  } finally {
    await watch?.stop();
    burst.close();
  }
}

/** The figures of one point on one line. */
function describePoint(point: MemoryPoint): string {
  const counts = (m: Record<string, number> | undefined) =>
    m === undefined || Object.keys(m).length === 0
      ? "none"
      : Object.entries(m)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ");
  const m = point.metricsDuringBurst;
  return (
    `${point.opened} opened in ${(point.openSeconds ?? Number.NaN).toFixed(2)} s  ` +
    `RSS ${(point.rss / 2 ** 20).toFixed(1)} MiB (baseline ${((point.baselineRss ?? 0) / 2 ** 20).toFixed(1)} MiB)  ` +
    `${(point.bytesPerStream / 1024).toFixed(1)} KiB/stream  ` +
    `${point.heapBytesPerStream === undefined ? "" : `live heap ${(point.heapBytesPerStream / 1024).toFixed(1)} KiB/stream  `}` +
    `connections closed: ${counts(point.connectionsClosed)}` +
    `${point.serverClosed === undefined ? "" : ` (server: ${counts(point.serverClosed)})`}` +
    `${m === undefined ? "" : `  /metrics during the burst: ${m.answered}/${m.scrapes} answered, max ${Math.round(m.maxMs)} ms, median ${Math.round(m.p50Ms)} ms`}` +
    `${point.ended ? `  ${point.ended} ended` : ""}${point.error ? `  ${point.error}` : ""}`
  );
}

export async function memoryScenario(options: MemoryOptions): Promise<MemoryRun[]> {
  const runs: MemoryRun[] = [];
  const counts = [...options.streamCounts].sort((a, b) => a - b);
  for (let repetition = 1; repetition <= options.repetitions; repetition++) {
    for (const server of options.servers) {
      const points: MemoryPoint[] = [];
      const load = loadNow();
      for (const streams of counts) {
        const tag = `memory ${server} rep ${repetition}: ${streams} idle streams`;
        let running: RunningServer | undefined;
        try {
          running = await startServer(server, options.start);
          const point = await measurePoint(running, streams);
          points.push(point);
          options.log(`${tag}  ${describePoint(point)}  load ${loadNow()}`);
        } catch (err) {
          const error = err instanceof Error ? err.message : String(err);
          options.log(`${tag} failed: ${error}`);
          points.push({ streams, rss: Number.NaN, bytesPerStream: Number.NaN, error });
        } finally {
          await running?.stop();
        }
      }
      runs.push({
        server,
        repetition,
        baselineRss: points[0]?.baselineRss ?? Number.NaN,
        points,
        load,
      });
    }
  }
  return runs;
}
