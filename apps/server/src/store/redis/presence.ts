import { byJoinTime, type MemberInfo, type Presence } from "../presence.js";
import type { RedisConnection, StoreClient } from "./connection.js";
import {
  awayKey,
  FIELD_SEP,
  JOINED_ROOMS,
  joinedKey,
  nodeKey,
  PRESENCE_ROOMS,
  presenceKey,
} from "./keys.js";
import type { RunScript } from "./scripts.js";

/** The node and the user of a presence hash field. */
function parseField(field: string): { node: string; user: string } {
  const sep = field.indexOf(FIELD_SEP);
  return { node: field.slice(0, sep), user: field.slice(sep + 1) };
}

/**
 * The nodes among `nodes` whose heartbeat key is gone (heartbeat.ts): one EXISTS per node, each
 * a single-key command (the keys are in different slots on a cluster). `self` is alive.
 */
export async function deadNodes(
  client: StoreClient,
  nodes: Iterable<string>,
  self: string,
): Promise<string[]> {
  const others = [...new Set(nodes)].filter((n) => n !== self);
  const alive = await Promise.all(others.map((n) => client.exists(nodeKey(n))));
  return others.filter((_, i) => alive[i] === 0);
}

/** The dead nodes with a field in `room`'s presence hash, for the room's scripts. */
export async function deadNodesOf(
  client: StoreClient,
  room: string,
  self: string,
): Promise<string[]> {
  const fields = await client.hKeys(presenceKey(room));
  return deadNodes(
    client,
    fields.map((f) => parseField(f).node),
    self,
  );
}

/**
 * Removes `room` from a cross-room set once `stillNeeded` says it has no reason to be there;
 * re-adds it when a writer on another node made it needed meanwhile. The writers add after
 * their room's script, so whichever order the two nodes' commands run in, the set ends right.
 */
export async function removeRoom(
  client: StoreClient,
  set: string,
  room: string,
  stillNeeded: () => Promise<boolean>,
): Promise<void> {
  await client.sRem(set, room);
  if (await stillNeeded()) await client.sAdd(set, room);
}

/**
 * Presence shared by every node on one Redis or a Redis Cluster: a hash per room of
 * `<node><sep><user>` → `<subscriptions>:<since ms>`, counted only for nodes whose heartbeat key
 * is alive (heartbeat.ts), so a dead node's members expire within its TTL. Joins, leaves and the
 * LEAVEs due are Lua scripts (lua/presence-*.lua), atomic across nodes, each on the room's keys
 * only: the caller reads which nodes are dead and passes them in. The set of rooms with
 * presence is kept beside them with single-key commands.
 */
export function createRedisPresence(
  connection: RedisConnection,
  run: RunScript,
  /** This node's name (Heartbeat.node). */
  node: string,
): Presence & { sweep(): Promise<void> } {
  const { client, call } = connection;
  // Fields of a room's presence hash, parsed, and the nodes among them that are alive.
  const liveFields = async (room: string) => {
    const hash = await client.hGetAll(presenceKey(room));
    const parsed = Object.entries(hash).map(([field, value]) => {
      const colon = value.indexOf(":");
      return {
        field,
        ...parseField(field),
        count: Number(value.slice(0, colon)),
        since: Number(value.slice(colon + 1)),
      };
    });
    const nodes = new Set(parsed.map((p) => p.node));
    const dead = new Set(await deadNodes(client, nodes, node));
    const live = new Set([...nodes].filter((n) => !dead.has(n)));
    return { parsed, live };
  };

  return {
    async join(room, user) {
      return call(async () => {
        const dead = await deadNodesOf(client, room, node);
        const first = await run(
          "presence-join",
          [presenceKey(room), awayKey(room)],
          [node, user, String(Date.now())],
          dead,
        );
        await client.sAdd(PRESENCE_ROOMS, room);
        return Number(first) === 1;
      });
    },
    async leave(room, user) {
      return call(async () => {
        const dead = await deadNodesOf(client, room, node);
        const last = await run(
          "presence-leave",
          [presenceKey(room), awayKey(room)],
          [node, user],
          dead,
        );
        return Number(last) === 1;
      });
    },
    async members(room): Promise<MemberInfo[]> {
      return call(async () => {
        const [{ parsed, live }, joined] = await Promise.all([
          liveFields(room),
          client.hGetAll(joinedKey(room)),
        ]);
        const byUser = new Map<string, MemberInfo>();
        // Joined in the history and away within the grace: listed with no connection.
        for (const [user, ts] of Object.entries(joined)) {
          byUser.set(user, { user, joinedAtMs: Number(ts), connections: 0 });
        }
        for (const p of parsed) {
          if (!live.has(p.node)) continue;
          const m = byUser.get(p.user);
          if (m === undefined) {
            byUser.set(p.user, { user: p.user, joinedAtMs: p.since, connections: p.count });
          } else {
            m.connections += p.count;
            m.joinedAtMs = Math.min(m.joinedAtMs, p.since);
          }
        }
        return [...byUser.values()].sort(byJoinTime);
      });
    },
    async subscriptions() {
      return call(async () => {
        const counts = new Map<string, number>();
        for (const room of await client.sMembers(PRESENCE_ROOMS)) {
          const { parsed, live } = await liveFields(room);
          const n = parsed.filter((p) => live.has(p.node)).reduce((sum, p) => sum + p.count, 0);
          if (n > 0) counts.set(room, n);
        }
        return counts;
      });
    },
    async due(graceMs) {
      return call(async () => {
        const owed: Array<{ room: string; user: string }> = [];
        for (const room of await client.sMembers(JOINED_ROOMS)) {
          const dead = await deadNodesOf(client, room, node);
          const [joined, ...users] = (await run(
            "presence-due",
            [joinedKey(room), presenceKey(room), awayKey(room)],
            [String(graceMs)],
            dead,
          )) as [number, ...string[]];
          if (Number(joined) === 0) {
            await removeRoom(
              client,
              JOINED_ROOMS,
              room,
              async () => (await client.hLen(joinedKey(room))) > 0,
            );
          }
          for (const user of users) owed.push({ room, user });
        }
        return owed;
      });
    },
    /** Deletes the presence of nodes whose heartbeat expired. */
    async sweep() {
      for (const room of await client.sMembers(PRESENCE_ROOMS)) {
        const { parsed, live } = await liveFields(room);
        const dead = parsed.filter((p) => !live.has(p.node)).map((p) => p.field);
        if (dead.length > 0) await client.hDel(presenceKey(room), dead);
        if (parsed.length === dead.length) {
          await removeRoom(
            client,
            PRESENCE_ROOMS,
            room,
            async () => (await client.hLen(presenceKey(room))) > 0,
          );
        }
      }
    },
    async close() {},
  };
}
