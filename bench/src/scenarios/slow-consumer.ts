// Scenario 4, a slow consumer: one subscriber stops reading (its own connection, 64 KiB window,
// stream paused) while the publisher keeps a steady rate to it and to the others. The others'
// p99 and the server's RSS are sampled every second; the slow one should end with
// RESOURCE_EXHAUSTED (grpc-status 8) once it is more than the server's queue limit behind.
import type http2 from "node:http2";
import { Publisher, SubscriberSet } from "../lib/fanout-load.js";
import { loadNow } from "../lib/machine.js";
import type { SlowConsumerRun } from "../lib/results.js";
import { type ServerKind, type StartOptions, startServer } from "../lib/servers.js";
import { sleep } from "../lib/stats.js";

export interface SlowConsumerOptions {
  servers: ServerKind[];
  repetitions: number;
  /** Seconds of publishing. */
  durationS: number;
  start: StartOptions;
  log: (line: string) => void;
}

const SUBSCRIBERS = 10;
/** Messages/s: 4,000 deliveries/s to the others, well inside every server's sustained rate. */
const RATE = 400;

export async function slowConsumerScenario(
  options: SlowConsumerOptions,
): Promise<SlowConsumerRun[]> {
  const runs: SlowConsumerRun[] = [];
  for (let repetition = 1; repetition <= options.repetitions; repetition++) {
    for (const server of options.servers) {
      const running = await startServer(server, options.start);
      const tag = `slow-consumer ${server} rep ${repetition}:`;
      try {
        const others = new SubscriberSet(running.url, {
          subscribers: SUBSCRIBERS,
          connections: 2,
          room: "slow",
          oneUser: true,
        });
        const slow = new SubscriberSet(running.url, {
          subscribers: 1,
          connections: 1,
          room: "slow",
          oneUser: true,
          streamWindow: 65_535,
        });
        await Promise.all([others.settle(), slow.settle()]);
        // Stops reading: no more data is consumed, so no WINDOW_UPDATE goes back to the server.
        (slow.streams[0] as http2.ClientHttp2Stream).pause();
        const started = performance.now();
        let slowEndedAfterS = Number.NaN;
        const slowStream = slow.streams[0] as http2.ClientHttp2Stream;
        slowStream.on("trailers", () => {
          slowEndedAfterS = (performance.now() - started) / 1000;
        });
        // The slow stream is paused, so its trailers would wait behind unread data: watch the
        // stream's close (RST or end) too, and read the status from what is recorded.
        slowStream.on("close", () => {
          if (Number.isNaN(slowEndedAfterS)) slowEndedAfterS = (performance.now() - started) / 1000;
        });
        const publisher = new Publisher(running.url, "slow");
        // Every message counts in the window it arrives in (also one sent in an earlier window).
        others.beginStep(publisher, 0);
        const p99ByWindow: number[] = [];
        const rssByWindow: number[] = [];
        const load = loadNow();
        let sent = 0;
        for (let second = 0; second < options.durationS; second++) {
          others.latency.reset();
          const windowStart = performance.now();
          while (performance.now() - windowStart < 1000) {
            const due = Math.floor(((performance.now() - windowStart) / 1000) * RATE);
            while (sent < second * RATE + due) {
              publisher.publish();
              sent++;
            }
            await sleep(5);
          }
          p99ByWindow.push(
            others.latency.count === 0 ? Number.NaN : others.latency.percentile(99) / 1000,
          );
          rssByWindow.push(running.rss());
        }
        // Let the slow one read again, so that its end (status in trailers) can arrive.
        slowStream.resume();
        await sleep(1000);
        const slowStatus =
          [...slow.ended.keys()][0] ?? (slowStream.closed ? "closed without status" : "open");
        publisher.close();
        others.close();
        slow.close();
        runs.push({
          server,
          repetition,
          p99ByWindow,
          rssByWindow,
          slowStatus,
          slowEndedAfterS,
          load,
        });
        options.log(
          `${tag} others' p99 by second ${p99ByWindow.map((p) => p.toFixed(0)).join(" ")} ms; ` +
            `RSS ${((rssByWindow[0] ?? 0) / 2 ** 20) | 0}→${((rssByWindow.at(-1) ?? 0) / 2 ** 20) | 0} MiB; ` +
            `slow one: grpc-status ${slowStatus} after ${slowEndedAfterS.toFixed(1)} s`,
        );
      } catch (err) {
        options.log(`${tag} failed: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        await running.stop();
      }
    }
  }
  return runs;
}
