import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { RedisConnection } from "./connection.js";
import { nodeKey } from "./keys.js";

/** A node's key is refreshed this often, ms. */
const NODE_HEARTBEAT_MS = 5_000;
/** A node whose key was not refreshed for this long is dead, s: its presence no longer counts. */
export const NODE_TTL_S = 15;

/** This node's liveness in Redis; see {@link startHeartbeat}. */
export interface Heartbeat {
  /** This node's name: `<hostname>:<pid>:<random>`. */
  readonly node: string;
  /** Stops the heartbeat and deletes the node's key: its subscriptions end with it. */
  stop(): Promise<void>;
}

/**
 * Keeps this node alive in Redis: its key (`sb:node:<node>`) is set now and refreshed every 5 s
 * with a TTL of {@link NODE_TTL_S}. Presence counts a node's subscriptions only while its key
 * lives, so a dead node's members expire within NODE_TTL_S.
 *
 * @param onError a refresh that failed (Redis unreachable: the next one tries again).
 */
export async function startHeartbeat(
  connection: RedisConnection,
  onError: (err: unknown, context: string) => void,
): Promise<Heartbeat> {
  const { client } = connection;
  const node = `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
  const beat = () =>
    connection.isReady
      ? client.set(nodeKey(node), "1", { EX: NODE_TTL_S }).then(
          () => {},
          (err: unknown) => onError(err, "node heartbeat"),
        )
      : Promise.resolve();
  await beat();
  const timer = setInterval(beat, NODE_HEARTBEAT_MS);
  timer.unref();
  return {
    node,
    async stop() {
      clearInterval(timer);
      if (connection.isReady) await client.del(nodeKey(node)).catch(() => {});
    },
  };
}
