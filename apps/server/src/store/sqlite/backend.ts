import type { PrimaryLink } from "../../cluster-channel.js";
import type { Backend } from "../backend.js";
import { createMemoryPresence } from "../memory/presence.js";
import { createSqliteStore } from "./message-store.js";
import { createWorkerLimitCounter } from "./worker-limits.js";
import { createWorkerPresence } from "./worker-presence.js";

/**
 * The embedded backend: the SQLite store in `dataDir`, with presence and limits counted in this
 * process when it is the database's only one; or, in a worker of WORKERS=N (`link`, its channel
 * to the primary), the database shared with the other workers and presence and limits counted
 * by the primary for them all (coordinator.ts).
 *
 * @throws SqliteError or a system error (DATA_DIR) when the database cannot be opened.
 */
export function createSqliteBackend(dataDir: string, link?: PrimaryLink): Backend {
  const store = createSqliteStore(dataDir, { link });
  // The store's record of joined members gives presence the members a restart left away.
  const joined = (room?: string) => store.joined(room);
  const presence =
    link === undefined ? createMemoryPresence(joined) : createWorkerPresence(link, joined);
  return {
    store,
    presence,
    ...(link === undefined ? {} : { limits: createWorkerLimitCounter(link) }),
    async close() {
      await presence.close();
      await store.close();
    },
  };
}
