// Scenario 6, the whole machine: fan-out at 1,000 subscribers with every process allowed on every
// core. Switchboard uses every core the only way it can, WORKERS=2 (node:cluster): on a Redis the
// scenario starts (workers share rooms through the store), and on SQLite (issue 20: every core of
// one machine on the durable file store: the workers share the database file; a server that
// refuses its configuration is recorded as failed with its own message). The seed's
// grpc-go server uses both cores with GOMAXPROCS=2. The load generator (this runner, its
// subscriber threads on every core) and Redis share the same cores in every run.
import { cpus } from "node:os";
import { ownCores, setOwnCores } from "../lib/machine.js";
import { startRedis } from "../lib/redis-server.js";
import type { FanoutRun } from "../lib/results.js";
import type { ServerKind, StartOptions } from "../lib/servers.js";
import { fanoutScenario } from "./fanout.js";

/** The setups of this scenario, by the server kind each starts. */
export type WholeMachineServer = Extract<
  ServerKind,
  "switchboard" | "switchboard-sqlite" | "seed-go"
>;

export interface WholeMachineOptions {
  /**
   * "switchboard" (WORKERS=2 on Redis), "switchboard-sqlite" (WORKERS=2 on SQLite) and/or
   * "seed-go" (GOMAXPROCS=2).
   */
  servers: WholeMachineServer[];
  subscribers: number;
  repetitions: number;
  deliveryRates: number[];
  stepMs: number;
  tries?: number;
  /** Generator threads (default: one per core, lib/fanout-threads.ts). */
  generatorThreads?: number | undefined;
  start: StartOptions;
  log: (line: string) => void;
}

/** Workers of Switchboard (and GOMAXPROCS of seed-go) in this scenario. */
export const WHOLE_MACHINE_WORKERS = 2;

/** The name a whole-machine run is recorded under. */
export const WHOLE_MACHINE_NAMES: Record<WholeMachineServer, string> = {
  switchboard: "switchboard WORKERS=2 (Redis)",
  "switchboard-sqlite": "switchboard WORKERS=2 (SQLite)",
  "seed-go": "seed-go GOMAXPROCS=2",
};

/** Every core of this machine, as taskset's list ("0-1"). */
export function everyCore(): string {
  return `0-${Math.max(1, cpus().length) - 1}`;
}

export async function wholeMachineScenario(options: WholeMachineOptions): Promise<FanoutRun[]> {
  const runs: FanoutRun[] = [];
  const mine = ownCores();
  const all = everyCore();
  setOwnCores(all);
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      for (const server of options.servers) {
        // A fresh Redis per Switchboard run on Redis: no history or presence left from the one
        // before. SQLite: a fresh data directory per server (lib/servers.ts DATA_DIR).
        const redis = server === "switchboard" ? await startRedis() : undefined;
        try {
          const workers = String(WHOLE_MACHINE_WORKERS);
          const env: Record<string, string> =
            server === "seed-go"
              ? { GOMAXPROCS: workers }
              : server === "switchboard-sqlite"
                ? { WORKERS: workers, STORE: "sqlite" }
                : { WORKERS: workers, STORE: redis?.url as string };
          const [run] = await fanoutScenario({
            servers: [server],
            subscriberCounts: [options.subscribers],
            repetitions: 1,
            firstRepetition: repetition,
            deliveryRates: options.deliveryRates,
            stepMs: options.stepMs,
            ...(options.tries === undefined ? {} : { tries: options.tries }),
            generatorThreads: options.generatorThreads,
            start: { ...options.start, cores: all, env },
            log: (line) => options.log(`whole machine: ${line}`),
          });
          if (run !== undefined) runs.push({ ...run, server: WHOLE_MACHINE_NAMES[server] });
        } finally {
          await redis?.stop();
        }
      }
    }
  } finally {
    setOwnCores(mine);
  }
  return runs;
}
