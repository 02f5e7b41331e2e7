// Scenario 6, the whole machine: fan-out at 1,000 subscribers with every process allowed on every
// core. Switchboard uses both cores the only way it can, WORKERS=2 on a Redis the scenario starts
// (node:cluster workers share rooms through the store); the seed's grpc-go server uses both with
// GOMAXPROCS=2. The load generator (this runner) and Redis share the same two cores in both runs.
import { setOwnCores } from "../lib/machine.js";
import { startRedis } from "../lib/redis-server.js";
import type { FanoutRun } from "../lib/results.js";
import type { ServerKind, StartOptions } from "../lib/servers.js";
import { fanoutScenario } from "./fanout.js";

export interface WholeMachineOptions {
  /** "switchboard" (WORKERS=2 on Redis) and/or "seed-go" (GOMAXPROCS=2). */
  servers: ServerKind[];
  subscribers: number;
  repetitions: number;
  deliveryRates: number[];
  stepMs: number;
  tries?: number;
  start: StartOptions;
  log: (line: string) => void;
}

/** The name a whole-machine run is recorded under. */
export const WHOLE_MACHINE_NAMES: Partial<Record<ServerKind, string>> = {
  switchboard: "switchboard WORKERS=2 (Redis)",
  "seed-go": "seed-go GOMAXPROCS=2",
};

export async function wholeMachineScenario(options: WholeMachineOptions): Promise<FanoutRun[]> {
  const runs: FanoutRun[] = [];
  setOwnCores("0,1");
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      for (const server of options.servers) {
        // A fresh Redis per Switchboard run: no history or presence left from the one before.
        const redis = server === "switchboard" ? await startRedis() : undefined;
        try {
          const env: Record<string, string> =
            redis === undefined ? { GOMAXPROCS: "2" } : { WORKERS: "2", STORE: redis.url };
          const [run] = await fanoutScenario({
            servers: [server],
            subscriberCounts: [options.subscribers],
            repetitions: 1,
            deliveryRates: options.deliveryRates,
            stepMs: options.stepMs,
            ...(options.tries === undefined ? {} : { tries: options.tries }),
            start: { ...options.start, cores: "0,1", env },
            log: (line) => options.log(`whole machine: ${line}`),
          });
          if (run !== undefined)
            runs.push({ ...run, server: WHOLE_MACHINE_NAMES[server] ?? server, repetition });
        } finally {
          await redis?.stop();
        }
      }
    }
  } finally {
    setOwnCores("1");
  }
  return runs;
}
