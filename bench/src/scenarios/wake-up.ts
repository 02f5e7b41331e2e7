// Issue 20's "cross-worker wake-up cost stays flat with the room count": with WORKERS=2 a message
// published through one worker must wake the subscribers held by the other. Server CPU per
// delivery with one room of one subscriber against 1,000 rooms of one subscriber each, the same
// messages/s and deliveries/s (each message reaches one subscriber), so the only difference is
// how many rooms there are to wake; a wake-up whose cost grows with the rooms (e.g. every room
// polled or notified on each message) shows as a ratio above 1.
//
// The publisher has two connections and sends each round of messages (one per room) through them
// in turn: node:cluster hands connections to the workers in turn, so every room gets half its
// messages through each worker, whichever worker holds its subscriber, in both cases alike.
// Everything on every core, as in the whole-machine scenario. Stores: SQLite (issue 20: the
// primary forwards each commit's wake-up to the workers that follow the room) and Redis (each
// room's pub/sub channel).
import { loadNow, ownCores, setOwnCores } from "../lib/machine.js";
import { startRedis } from "../lib/redis-server.js";
import type { WakeUpRun } from "../lib/results.js";
import type { StartOptions } from "../lib/servers.js";
import { measureCost } from "./fanout-cost.js";
import { everyCore, WHOLE_MACHINE_WORKERS } from "./whole-machine.js";

export interface WakeUpOptions {
  stores: ("sqlite" | "redis")[];
  /** Room counts, one subscriber each (default 1 and 1,000). */
  roomCounts: number[];
  repetitions: number;
  /** Messages (= deliveries) per second (default 200: well below what the setups serve). */
  rate?: number;
  /** Messages in the measured window (default 4,000). */
  messages?: number;
  start: StartOptions;
  log: (line: string) => void;
}

/** The name a wake-up run is recorded under. */
export const WAKE_UP_SETUPS = {
  sqlite: `switchboard WORKERS=${WHOLE_MACHINE_WORKERS} (SQLite)`,
  redis: `switchboard WORKERS=${WHOLE_MACHINE_WORKERS} (Redis)`,
} as const;

const fixed = (n: number | undefined, digits = 2) =>
  n === undefined || Number.isNaN(n) ? "—" : n.toFixed(digits);

export async function wakeUpScenario(options: WakeUpOptions): Promise<WakeUpRun[]> {
  const runs: WakeUpRun[] = [];
  const rate = options.rate ?? 200;
  const messages = options.messages ?? 4000;
  const mine = ownCores();
  const all = everyCore();
  setOwnCores(all);
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      for (const rooms of options.roomCounts) {
        for (const store of options.stores) {
          const setup = WAKE_UP_SETUPS[store];
          const tag = `wake-up ${setup} ${rooms} room(s) rep ${repetition}:`;
          const load = loadNow();
          const redis = store === "redis" ? await startRedis() : undefined;
          const base = {
            server: setup,
            setup,
            store,
            workers: WHOLE_MACHINE_WORKERS,
            repetition,
            load,
          };
          try {
            const point = await measureCost(
              store === "sqlite" ? "switchboard-sqlite" : "switchboard",
              {
                ...options.start,
                cores: all,
                env: {
                  WORKERS: String(WHOLE_MACHINE_WORKERS),
                  STORE: store === "sqlite" ? "sqlite" : (redis?.url as string),
                },
              },
              {
                subscribers: rooms,
                rooms,
                publisherConnections: WHOLE_MACHINE_WORKERS,
                rate,
                deliveries: messages,
              },
            );
            runs.push({ ...base, ...point });
            options.log(
              `${tag} ${fixed(point.usPerDelivery)} µs/delivery (net of idle ${fixed(point.netUsPerDelivery)}), ` +
                `${point.delivered}/${point.expected} delivered, p99 ${fixed(point.p99, 1)} ms` +
                `${point.error ? `  FAILED: ${point.error}` : ""}`,
            );
          } catch (err) {
            const error = err instanceof Error ? err.message : String(err);
            options.log(`${tag} failed: ${error}`);
            runs.push({
              ...base,
              subscribers: rooms,
              rooms,
              rate,
              usPerDelivery: Number.NaN,
              netUsPerDelivery: Number.NaN,
              error,
            });
          } finally {
            await redis?.stop();
          }
        }
      }
    }
  } finally {
    setOwnCores(mine);
  }
  return runs;
}
