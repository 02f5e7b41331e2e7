import type { PrimaryLink } from "../../cluster-channel.js";
import type { LimitCounter, StreamSlot } from "../limits.js";

/**
 * The per-identity limits of a worker of WORKERS=N on SQLite, counted once for the machine by
 * the primary (coordinator.ts): one token bucket and one open-stream count per identity for
 * every worker together, not one per worker. A publish (when PUBLISH_RATE is on) and a stream
 * opened (when MAX_STREAMS_PER_IDENTITY is on) cost one round trip to the primary over
 * node:cluster IPC; a stream's end, one notice. A worker that dies gives its slots back at once
 * (the primary sees it exit).
 */
export function createWorkerLimitCounter(link: PrimaryLink): LimitCounter {
  return {
    async takePublishToken(identity, ratePerS, burst, signal) {
      signal?.throwIfAborted();
      return link.request<number>("limits.take", { identity, ratePerS, burst });
    },
    async acquireStream(identity, max, signal): Promise<StreamSlot | undefined> {
      signal?.throwIfAborted();
      const id = await link.request<number>("limits.acquire", { identity, max });
      if (id === 0) return undefined;
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          link.notify("limits.release", id);
        },
      };
    },
    async close() {},
  };
}
