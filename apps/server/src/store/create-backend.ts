import cluster from "node:cluster";
import { clusterPrimaryLink } from "../cluster-channel.js";
import type { Config } from "../config.js";
import type { Backend } from "./backend.js";
import { createMemoryStore } from "./memory/message-store.js";
import { createMemoryPresence } from "./memory/presence.js";
import { createRedisBackend } from "./redis/backend.js";
import type { OutageEvent } from "./redis/outage.js";
import { createSqliteBackend } from "./sqlite/backend.js";

/**
 * The backend named by STORE: sqlite (embedded), memory, or a redis:// URL or
 * redis-cluster:// seed list (several nodes).
 * Memory keeps presence in this process (memory/presence.ts); Redis shares it between nodes;
 * SQLite keeps it in this process, or, in a worker of WORKERS=N, has the primary count it for
 * every worker sharing the database (sqlite/backend.ts).
 *
 * `onError` hears the store's background errors; `onOutage` the start and end of each Redis
 * outage, once each (redis/outage.ts), instead of each reconnect attempt.
 *
 * @throws StoreUnavailableError when Redis cannot be reached at start.
 */
export async function createBackend(
  config: Pick<
    Config,
    | "store"
    | "historyMaxLength"
    | "historyMaxAgeS"
    | "idempotencyTtlS"
    | "presenceGraceMs"
    | "redisWaitReplicas"
    | "redisWaitTimeoutMs"
    | "workers"
  >,
  onError: (err: unknown, context: string) => void,
  onOutage?: (event: OutageEvent) => void,
): Promise<Backend> {
  if (config.store.kind === "redis" || config.store.kind === "redis-cluster") {
    return createRedisBackend({
      target: config.store,
      historyMaxLength: config.historyMaxLength,
      historyMaxAgeS: config.historyMaxAgeS,
      idempotencyTtlS: config.idempotencyTtlS,
      presenceGraceMs: config.presenceGraceMs,
      waitReplicas: config.redisWaitReplicas,
      waitTimeoutMs: config.redisWaitTimeoutMs,
      onError,
      ...(onOutage === undefined ? {} : { onOutage }),
    });
  }
  if (config.store.kind === "sqlite") {
    const shared = config.workers > 1 && cluster.isWorker;
    return createSqliteBackend(config.store.dataDir, shared ? clusterPrimaryLink() : undefined);
  }
  const store = createMemoryStore();
  // The store's record of joined members gives presence the members a restart left away.
  const presence = createMemoryPresence((room) => store.joined(room));
  return {
    store,
    presence,
    async close() {
      await presence.close();
      await store.close();
    },
  };
}
