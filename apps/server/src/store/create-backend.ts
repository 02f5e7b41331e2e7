import type { Config } from "../config.js";
import type { Backend } from "./backend.js";
import { createMemoryStore } from "./memory/message-store.js";
import { createMemoryPresence } from "./memory/presence.js";
import { createRedisBackend } from "./redis/backend.js";
import { createSqliteStore } from "./sqlite/message-store.js";

/**
 * The backend named by STORE: sqlite (embedded), memory, or a redis:// URL or
 * redis-cluster:// seed list (several nodes).
 * SQLite and memory keep presence in this process (memory/presence.ts); Redis shares it.
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
  >,
  onError: (err: unknown, context: string) => void,
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
    });
  }
  const store =
    config.store.kind === "memory" ? createMemoryStore() : createSqliteStore(config.store.dataDir);
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
