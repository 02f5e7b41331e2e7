/**
 * The names of the Redis store's keys and channels. A room's keys share the hash tag `{room}`,
 * so that they live in one slot.
 */

/** The room's last offset (INCR). */
export const seqKey = (room: string) => `sb:{${room}}:seq`;
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
/** The room's change feed (pub/sub): every appended message, as the script stored it. */
export const feedChannel = (room: string) => `sb:{${room}}:feed`;
/** Every room with history. */
export const ROOMS = "sb:rooms";
/** Rooms with a presence hash. */
export const PRESENCE_ROOMS = "sb:presence-rooms";
/** Rooms whose history lists someone as joined. */
export const JOINED_ROOMS = "sb:joined-rooms";
/** Set once the joined members of history written before they were recorded are. */
export const JOINED_RECORDED = "sb:joined-recorded";

/** Where a node's heartbeat key starts; the Lua scripts get it as an argument. */
export const NODE_KEY_PREFIX = "sb:node:";
/** A node is alive while this key exists (store/redis/heartbeat.ts). */
export const nodeKey = (node: string) => `${NODE_KEY_PREFIX}${node}`;
/**
 * Separates node and user in a presence field (a user name cannot contain control characters);
 * the Lua scripts get it as an argument.
 */
export const FIELD_SEP = "\u001f";
