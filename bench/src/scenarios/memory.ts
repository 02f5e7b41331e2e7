// Scenario 3, idle streams: resident memory (VmRSS) per idle SubscribeMessages stream and the time
// to open them, at each count in a fresh server process (one process, no workers). Streams are
// 100 per HTTP/2 connection (100,000 streams: 1,000 connections on each side; the runner raises
// its open-file limit, lib/servers.ts). A point is (RSS with N idle streams − RSS of the same
// process before any) / N, read after every stream was welcomed and the server went quiet; and
// the live heap per stream, the same difference of V8's heap used after two forced full GCs
// (lib/server-probe.ts; read after RSS, Node servers only).
import { SubscriberSet } from "../lib/fanout-load.js";
import { loadNow } from "../lib/machine.js";
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

/** Opens `streams` idle streams on a fresh server and measures them. */
async function measurePoint(running: RunningServer, streams: number): Promise<MemoryPoint> {
  // Warm-up: one stream opened and closed, so lazily loaded code is counted in the baseline.
  const warm = new SubscriberSet(running.url, {
    subscribers: 1,
    connections: 1,
    room: "warm-up",
    oneUser: true,
  });
  await warm.settle();
  warm.close();
  await sleep(1500);
  const baselineRss = await steadyRss(running.rss);
  const baselineHeap = await running.heap();
  const set = new SubscriberSet(running.url, {
    subscribers: streams,
    connections: Math.max(1, Math.ceil(streams / STREAMS_PER_CONNECTION)),
    room: "idle",
    oneUser: true,
  });
  try {
    let error: string | undefined;
    try {
      // Generous: a server that opens 500 streams/s still gets there.
      await set.settle(Math.max(120_000, streams * 2));
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
    await sleep(1500);
    const rss = await steadyRss(running.rss);
    const heap = await running.heap();
    const heapUsed = heap?.after.heapUsed;
    const baselineHeapUsed = baselineHeap?.after.heapUsed;
    return {
      streams,
      opened: set.welcomed,
      ended: [...set.ended.values()].reduce((a, b) => a + b, 0),
      rss,
      baselineRss,
      bytesPerStream: (rss - baselineRss) / Math.max(1, set.welcomed),
      openSeconds: (set.allWelcomedAt - set.openedAt) / 1000,
      ...(heapUsed === undefined || baselineHeapUsed === undefined
        ? {}
        : {
            heapUsed,
            baselineHeapUsed,
            heapBytesPerStream: (heapUsed - baselineHeapUsed) / Math.max(1, set.welcomed),
          }),
      ...(error === undefined ? {} : { error }),
    };
  } finally {
    set.close();
  }
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
          options.log(
            `${tag}  ${point.opened} opened in ${(point.openSeconds ?? Number.NaN).toFixed(2)} s  ` +
              `RSS ${(point.rss / 2 ** 20).toFixed(1)} MiB (baseline ${((point.baselineRss ?? 0) / 2 ** 20).toFixed(1)} MiB)  ` +
              `${(point.bytesPerStream / 1024).toFixed(1)} KiB/stream` +
              `${point.heapBytesPerStream === undefined ? "" : `, live heap ${(point.heapBytesPerStream / 1024).toFixed(1)} KiB/stream`}` +
              `${point.ended ? `  ${point.ended} ended` : ""}${point.error ? `  ${point.error}` : ""}`,
          );
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
