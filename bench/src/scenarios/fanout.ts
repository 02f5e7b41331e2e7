// Scenario 1, fan-out: one publisher, N subscribers over HTTP/2 connections, open-loop publish
// rate stepped up until a step is not sustained (lib/fanout-load.ts). Latency on every delivery to
// every subscriber; the server's CPU time, event-loop delay and GC read around every step.
import {
  type FanoutSubscribers,
  Publisher,
  publishOpenLoop,
  runSteps,
} from "../lib/fanout-load.js";
import { defaultThreads, openSubscribers } from "../lib/fanout-threads.js";
import { loadNow } from "../lib/machine.js";
import type { FanoutRun } from "../lib/results.js";
import { type ServerKind, type StartOptions, startServer } from "../lib/servers.js";
import { sleep } from "../lib/stats.js";

export interface FanoutOptions {
  servers: ServerKind[];
  subscriberCounts: number[];
  repetitions: number;
  /** Offered deliveries/s of each step. */
  deliveryRates: number[];
  stepMs: number;
  /** Tries of a step that is not sustained (1: none repeated); every try is recorded. */
  tries?: number;
  /**
   * Worker threads reading the subscribers (0: the publisher's thread); default: one per core
   * the generator may use (lib/fanout-threads.ts defaultThreads), the same for every server.
   */
  generatorThreads?: number | undefined;
  start: StartOptions;
  log: (line: string) => void;
  /** The number of the first repetition, in log lines and runs (default 1). */
  firstRepetition?: number;
}

/** Subscribers per HTTP/2 connection. */
const STREAMS_PER_CONNECTION = 100;

export async function fanoutScenario(options: FanoutOptions): Promise<FanoutRun[]> {
  const runs: FanoutRun[] = [];
  const tries = Math.max(1, options.tries ?? 1);
  for (const subscribers of options.subscriberCounts) {
    // The same load for every server: connections, generator threads and step schedule.
    const connections = Math.max(1, Math.ceil(subscribers / STREAMS_PER_CONNECTION));
    const threads = options.generatorThreads ?? defaultThreads(connections);
    const load = {
      connections,
      generatorThreads: threads,
      stepMs: options.stepMs,
      schedule: [
        ...new Set(options.deliveryRates.map((d) => Math.max(1, Math.round(d / subscribers)))),
      ],
    };
    const first = options.firstRepetition ?? 1;
    for (let repetition = first; repetition < first + options.repetitions; repetition++) {
      // Servers interleaved within each repetition, so a noisy minute does not hit one server only.
      for (const server of options.servers) {
        const tag = `fanout ${server} ${subscribers} subs rep ${repetition}:`;
        const failed = (err: unknown) => {
          const error = err instanceof Error ? err.message : String(err);
          options.log(`${tag} failed: ${error}`);
          runs.push({
            server,
            subscribers,
            repetition,
            steps: [],
            sustained: 0,
            tries,
            load: loadNow(),
            error,
            ...load,
          });
        };
        let running: Awaited<ReturnType<typeof startServer>>;
        try {
          running = await startServer(server, options.start);
        } catch (err) {
          failed(err);
          continue;
        }
        let subs: FanoutSubscribers | undefined;
        try {
          subs = openSubscribers(
            running.url,
            {
              subscribers,
              connections,
              room: "bench",
              // One user: a JOIN per subscriber would be a fan-out storm of N² deliveries.
              oneUser: true,
            },
            threads,
          );
          await subs.settle(Math.max(60_000, subscribers * 20));
          const publisher = new Publisher(running.url, "bench");
          // Warm-up (JIT, buffers): the lowest rate for 2 s, not recorded (nothing is measured
          // before the first step begins).
          await publishOpenLoop(
            publisher,
            Math.max(1, Math.round((options.deliveryRates[0] ?? 5000) / subscribers)),
            2000,
          );
          await sleep(1000);
          const loadAvg = loadNow();
          const steps = await runSteps(subs, publisher, {
            deliveryRates: options.deliveryRates,
            stepMs: options.stepMs,
            tries,
            server: running,
            log: (line) => options.log(`${tag} ${line}`),
          });
          publisher.close();
          runs.push({
            server,
            subscribers,
            repetition,
            steps,
            sustained: steps.filter((s) => s.sustained).at(-1)?.deliveriesPerSecond ?? 0,
            tries,
            load: loadAvg,
            ...load,
          });
        } catch (err) {
          failed(err);
        } finally {
          await subs?.close();
          await running.stop();
        }
      }
    }
  }
  return runs;
}
