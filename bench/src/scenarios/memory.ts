// Scenario 3, memory: resident memory (VmRSS) per idle SubscribeMessages stream. One server
// process per repetition; streams are opened in steps up to each count, and each point is
// (RSS now − RSS before any stream) / streams, read after the streams are welcomed and idle.
import { SubscriberSet } from "../lib/fanout-load.js";
import { loadNow } from "../lib/machine.js";
import type { MemoryRun } from "../lib/results.js";
import { type ServerKind, type StartOptions, startServer } from "../lib/servers.js";
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

export async function memoryScenario(options: MemoryOptions): Promise<MemoryRun[]> {
  const runs: MemoryRun[] = [];
  const counts = [...options.streamCounts].sort((a, b) => a - b);
  for (let repetition = 1; repetition <= options.repetitions; repetition++) {
    for (const server of options.servers) {
      const running = await startServer(server, options.start);
      const sets: SubscriberSet[] = [];
      try {
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
        const load = loadNow();
        const points: MemoryRun["points"] = [];
        let open = 0;
        for (const streams of counts) {
          const more = streams - open;
          const set = new SubscriberSet(running.url, {
            subscribers: more,
            connections: Math.max(1, Math.ceil(more / STREAMS_PER_CONNECTION)),
            room: "idle",
            oneUser: true,
          });
          sets.push(set);
          await set.settle(120_000);
          open = streams;
          await sleep(1500);
          const rss = await steadyRss(running.rss);
          const bytesPerStream = (rss - baselineRss) / streams;
          points.push({ streams, rss, bytesPerStream });
          options.log(
            `memory ${server} rep ${repetition}: ${streams} idle streams  RSS ${(rss / 2 ** 20).toFixed(1)} MiB  ` +
              `(baseline ${(baselineRss / 2 ** 20).toFixed(1)} MiB)  ${(bytesPerStream / 1024).toFixed(1)} KiB/stream`,
          );
        }
        runs.push({ server, repetition, baselineRss, points, load });
      } catch (err) {
        options.log(
          `memory ${server} rep ${repetition} failed: ${err instanceof Error ? err.message : String(err)}`,
        );
      } finally {
        for (const set of sets) set.close();
        await running.stop();
      }
    }
  }
  return runs;
}
