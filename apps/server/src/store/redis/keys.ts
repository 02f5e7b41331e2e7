/**
 * The names of the Redis store's keys and channels. A room's keys share the hash tag `{room}`,
 * so that they live in one slot.
 */

/** The room's last offset (INCR). */
export const seqKey = (room: string) => `sb:{${room}}:seq`;
/**
 * The epoch of the room's log (store/epoch.ts): set by the append script with the log's first
 * message, lost with the log (FLUSHALL), replaced when offsets went back (seen-offsets.ts).
 */
export const epochKey = (room: string) => `sb:{${room}}:epoch`;
/**
 * The room's last offset when its log took its current epoch (0 for a new log), written with the
 * epoch: the epoch's own messages are the offsets after it. An ordered feed that meets a new
 * epoch starts there (feeds.ts). Absent for an epoch written before this key was.
 */
export const epochBaseKey = (room: string) => `sb:{${room}}:epoch-base`;
/** The room's history: a stream whose entry IDs are `<offset>-0`. */
export const logKey = (room: string) => `sb:{${room}}:log`;
/** An idempotency key's original message, while its TTL lasts. */
export const idemKey = (room: string, key: string) => `sb:{${room}}:idem:${key}`;
/** `<node><FIELD_SEP><user>` → `<subscriptions>:<since ms>`, for every node (dead ones too). */
export const presenceKey = (room: string) => `sb:{${room}}:presence`;
/** user → the timestamp of their stored JOIN, while the history lists them as joined. */
export const joinedKey = (room: string) => `sb:{${room}}:joined`;
/** user → since when (Redis TIME, ms) a joined user has had no subscription on a live node. */
export const awayKey = (room: string) => `sb:{${room}}:away`;
/** The room's change feed (sharded pub/sub, in the room's slot): every appended message. */
export const feedChannel = (room: string) => `sb:{${room}}:feed`;
// The cross-room sets below are written with single-key commands only, never with a room's keys
// in one script: on Redis Cluster they live in other slots. Each is added to after the room's
// script and removed from before a re-check (message-store.ts, presence.ts), so a crash between
// the two leaves at worst a stale member, repaired by the next write or sweep.

/** Every room with history. */
export const ROOMS = "sb:rooms";
/** Rooms with a presence hash. */
export const PRESENCE_ROOMS = "sb:presence-rooms";
/** Rooms whose history lists someone as joined. */
export const JOINED_ROOMS = "sb:joined-rooms";
/** Set once the joined members of history written before they were recorded are. */
export const JOINED_RECORDED = "sb:joined-recorded";

/**
 * A node is alive while this key exists (store/redis/heartbeat.ts). Scripts never read it (it is
 * in its own slot): callers do, and pass the dead nodes to the room's script.
 */
export const nodeKey = (node: string) => `sb:node:${node}`;
/**
 * Separates node and user in a presence field (a user name cannot contain control characters);
 * the Lua scripts get it as an argument.
 */
export const FIELD_SEP = "\u001f";
