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
  close(): Promise<void>;
}
