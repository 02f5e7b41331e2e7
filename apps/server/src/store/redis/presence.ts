import { byJoinTime, type MemberInfo, type Presence } from "../presence.js";
import type { RedisConnection } from "./connection.js";
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

/**
 * Presence shared by every node on one Redis: a hash per room of `<node><sep><user>` →
 * `<subscriptions>:<since ms>`, counted only for nodes whose heartbeat key is alive
 * (heartbeat.ts), so a dead node's members expire within its TTL. Joins, leaves and the LEAVEs
 * due are Lua scripts (lua/presence-*.lua), atomic across nodes.
 */
export function createRedisPresence(
  connection: RedisConnection,
  run: RunScript,
  /** This node's name (Heartbeat.node). */
  node: string,
): Presence & { sweep(): Promise<void> } {
  const { client, call } = connection;
  // Fields of a room's presence hash, parsed, for live nodes only.
  const liveFields = async (room: string) => {
    const hash = await client.hGetAll(presenceKey(room));
    const parsed = Object.entries(hash).map(([field, value]) => {
      const sep = field.indexOf(FIELD_SEP);
      const colon = value.indexOf(":");
      return {
        field,
        node: field.slice(0, sep),
        user: field.slice(sep + 1),
        count: Number(value.slice(0, colon)),
        since: Number(value.slice(colon + 1)),
      };
    });
    const nodes = [...new Set(parsed.map((p) => p.node))];
    const alive = nodes.length === 0 ? [] : await client.mGet(nodes.map((n) => nodeKey(n)));
    const live = new Set(nodes.filter((_, i) => alive[i] !== null));
    return { parsed, live };
  };

  return {
    async join(room, user) {
      const first = await run(
        "presence-join",
        [presenceKey(room), PRESENCE_ROOMS, awayKey(room)],
        [node, user, String(Date.now()), room],
      );
      return Number(first) === 1;
    },
    async leave(room, user) {
      const last = await run("presence-leave", [presenceKey(room), awayKey(room)], [node, user]);
      return Number(last) === 1;
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
          const users = (await run(
            "presence-due",
            [joinedKey(room), presenceKey(room), awayKey(room), JOINED_ROOMS],
            [String(graceMs), room],
          )) as string[];
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
        if (parsed.length === dead.length) await client.sRem(PRESENCE_ROOMS, room);
      }
    },
    async close() {},
  };
}
