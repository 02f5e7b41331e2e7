import { byJoinTime, type JoinedSource, type MemberInfo, type Presence } from "../presence.js";

const key = (room: string, user: string) => `${room}\u001f${user}`;

/**
 * Presence kept in this process's memory, for the stores only this process writes (SQLite,
 * memory). Subscriptions are counted in memory; `joined` (the store's durable record of joined
 * members, MessageStore.joined) supplies the away members: after a restart, the members the
 * previous process left joined. Without `joined`, only open subscriptions are listed and
 * nothing is ever due.
 */
export function createMemoryPresence(joined?: JoinedSource): Presence {
  // room → user → open subscriptions, oldest first (their start times).
  const rooms = new Map<string, Map<string, number[]>>();
  // room␟user → when the user's last subscription ended (or was found missing), ms.
  const away = new Map<string, number>();
  const live = (room: string, user: string) => rooms.get(room)?.has(user) === true;
  return {
    async join(room, user) {
      away.delete(key(room, user));
      let users = rooms.get(room);
      if (users === undefined) {
        users = new Map();
        rooms.set(room, users);
      }
      const starts = users.get(user);
      if (starts !== undefined) {
        starts.push(Date.now());
        return false;
      }
      users.set(user, [Date.now()]);
      return true;
    },
    async leave(room, user) {
      const users = rooms.get(room);
      const starts = users?.get(user);
      if (users === undefined || starts === undefined) return false;
      starts.shift();
      if (starts.length > 0) return false;
      users.delete(user);
      if (users.size === 0) rooms.delete(room);
      away.set(key(room, user), Date.now());
      return true;
    },
    async members(room) {
      const byUser = new Map<string, MemberInfo>();
      for (const m of (await joined?.(room)) ?? []) {
        byUser.set(m.user, { user: m.user, joinedAtMs: m.joinedAtMs, connections: 0 });
      }
      for (const [user, starts] of rooms.get(room) ?? new Map<string, number[]>()) {
        const stored = byUser.get(user);
        byUser.set(user, {
          user,
          joinedAtMs: Math.min(stored?.joinedAtMs ?? Infinity, starts[0] as number),
          connections: starts.length,
        });
      }
      return [...byUser.values()].sort(byJoinTime);
    },
    async subscriptions() {
      const counts = new Map<string, number>();
      for (const [room, users] of rooms) {
        let n = 0;
        for (const starts of users.values()) n += starts.length;
        counts.set(room, n);
      }
      return counts;
    },
    async due(graceMs) {
      if (joined === undefined) return [];
      const now = Date.now();
      const owed: Array<{ room: string; user: string }> = [];
      const members = new Set<string>();
      for (const { room, user } of await joined()) {
        const k = key(room, user);
        members.add(k);
        if (live(room, user)) continue;
        const since = away.get(k);
        if (since === undefined) away.set(k, now);
        else if (now - since >= graceMs) owed.push({ room, user });
      }
      // Whoever the history no longer lists (their LEAVE is stored) is no longer away.
      for (const k of away.keys()) if (!members.has(k)) away.delete(k);
      return owed;
    },
    async close() {},
  };
}
