import type { Backend } from "../backend.js";
import { connectRedis, type RedisTarget, unavailable } from "./connection.js";
import { RedisFeeds } from "./feeds.js";
import { startHeartbeat } from "./heartbeat.js";
import { createRedisLimitCounter } from "./limits.js";
import {
  createRedisMessageStore,
  decode,
  type RedisStoreOptions,
  readLog,
  recordJoinedMembers,
} from "./message-store.js";
import { type OutageEvent, OutageTracker } from "./outage.js";
import { createRedisPresence } from "./presence.js";
import { loadScripts, scriptRunner } from "./scripts.js";

/** Settings of the Redis backend (from the configuration). */
export interface RedisOptions extends RedisStoreOptions {
  /** One server (`redis://host:port/db`, also `rediss://` for TLS) or a cluster's seed nodes. */
  target: RedisTarget;
  /** Called with background errors outside an outage (a failed sweep, a release). */
  onError: (err: unknown, context: string) => void;
  /**
   * Called when Redis becomes unreachable and when it answers again (outage.ts): once each per
   * outage, whatever the number of reconnect attempts and failed background tasks between.
   * Without it, an outage's start goes to `onError`.
   */
  onOutage?: (event: OutageEvent) => void;
}

/** How often dead nodes' presence and over-age history are swept, ms. */
const SWEEP_MS = 30_000;

/**
 * The Redis backend, for several nodes (STORE=redis://… or redis-cluster://…): the message store
 * (message-store.ts: a stream per room, appended by a Lua script that also publishes to the room's
 * change feed, feeds.ts, or, with a replica wait, published after it), presence shared by every
 * node (presence.ts), the per-identity limits' counter shared by every node and worker (limits.ts),
 * and this node's heartbeat (heartbeat.ts), on one connection (connection.ts) to a single Redis (or
 * Valkey) 7 server or to a Redis Cluster: one code path for both. Every script declares every key
 * it touches, all in one slot (the room's or the identity's hash tag); cross-room data is written
 * with single-key commands.
 *
 * Redis trouble is never fatal: while Redis (or a shard's master) is unreachable, the calls it
 * serves fail at once with StoreUnavailableError, feeds end with `lost`, and the client
 * reconnects by itself (on a cluster, to the promoted replica).
 *
 * @throws StoreUnavailableError when Redis cannot be reached; Error when a Lua script file is
 *   missing.
 */
export async function createRedisBackend(options: RedisOptions): Promise<Backend> {
  const scripts = loadScripts();
  const outage = new OutageTracker(
    options.onError,
    options.onOutage ??
      ((event) => {
        if (event.state === "down") options.onError(new Error(event.reason), event.context);
      }),
  );
  const onError = outage.error;
  const connection = await connectRedis(options.target, onError, outage.ready);
  outage.isReady = () => connection.isReady;
  const run = scriptRunner(connection, scripts);
  const heartbeat = await startHeartbeat(connection, onError);
  await recordJoinedMembers(connection.client).catch((err: unknown) => {
    throw unavailable(err);
  });
  // With a replica wait, messages are announced after it, by the node that stored them.
  const feeds = new RedisFeeds(
    connection,
    decode,
    onError,
    (options.waitReplicas ?? 0) > 0
      ? (room, range, count) => readLog(run, room, range, count)
      : undefined,
  );
  const store = createRedisMessageStore(connection, run, feeds, options, heartbeat.node, onError);
  const presence = createRedisPresence(connection, run, heartbeat.node);
  // The publish rate and stream cap, shared by every node and worker on this Redis.
  const limits = createRedisLimitCounter(connection, {
    owner: heartbeat.node,
    onError: onError,
  });
  const sweeper = setInterval(() => {
    if (!connection.isReady) return;
    void presence.sweep().catch((err: unknown) => onError(err, "presence sweep"));
    if (options.historyMaxAgeS > 0) {
      void store.trimByAge().catch((err: unknown) => onError(err, "history trim"));
    }
  }, SWEEP_MS);
  sweeper.unref();

  return {
    store,
    presence,
    limits,
    async close() {
      clearInterval(sweeper);
      outage.stop();
      await limits.close();
      await store.close();
      // This node's subscriptions end with it: drop its presence now rather than at expiry.
      await heartbeat.stop();
      if (connection.isReady) await presence.sweep().catch(() => {});
      await connection.close();
    },
  };
}
