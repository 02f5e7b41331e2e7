import type { LimitCounter } from "./limits.js";
import type { MessageStore } from "./message-store.js";
import type { Presence } from "./presence.js";

/**
 * What the domain needs from storage: the durable log and presence, closed together. Made by
 * create-backend.ts from the configuration; each implementation lives in its own folder
 * (memory/, sqlite/, redis/).
 */
export interface Backend {
  store: MessageStore;
  presence: Presence;
  /**
   * The per-identity limits' counter shared by every process on this store (Redis:
   * redis/limits.ts); undefined for a store of one process, whose limits are counted in it.
   */
  limits?: LimitCounter;
  close(): Promise<void>;
}
