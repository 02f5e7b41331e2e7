import type { Config } from "../config.js";
import { createMemoryStore } from "./memory-store.js";
import type { MessageStore } from "./message-store.js";
import { createLocalPresence, type Presence } from "./presence.js";
import { createRedisBackend } from "./redis-backend.js";
import { createSqliteStore } from "./sqlite-store.js";

/** What the domain needs from storage: the durable log and presence, closed together. */
export interface Backend {
  store: MessageStore;
  presence: Presence;
  close(): Promise<void>;
}

/**
 * The backend named by STORE: sqlite (embedded), memory, or a redis:// URL (several nodes).
 *
 * @throws StoreUnavailableError when Redis cannot be reached at start.
 */
export async function createBackend(
  config: Pick<
    Config,
    "store" | "historyMaxLength" | "historyMaxAgeS" | "idempotencyTtlS" | "presenceGraceMs"
  >,
  onError: (err: unknown, context: string) => void,
): Promise<Backend> {
  if (config.store.kind === "redis") {
    return createRedisBackend({
      url: config.store.url,
      historyMaxLength: config.historyMaxLength,
      historyMaxAgeS: config.historyMaxAgeS,
      idempotencyTtlS: config.idempotencyTtlS,
      presenceGraceMs: config.presenceGraceMs,
      onError,
    });
  }
  const store =
    config.store.kind === "memory" ? createMemoryStore() : createSqliteStore(config.store.dataDir);
  // The store's record of joined members gives presence the members a restart left away.
  const presence = createLocalPresence((room) => store.joined(room));
  return {
    store,
    presence,
    async close() {
      await presence.close();
      await store.close();
    },
  };
}
