import type { JoinedMember } from "./message-store.js";

/**
 * Who is subscribed to which room, across every node sharing a store. A user counts once per
 * room however many subscriptions (streams, tabs, nodes) it has; JOIN is published for the first
 * and LEAVE for the last, once a grace period has passed without a new subscription (so a
 * reconnect, a server restart or a failover to another node is not a departure).
 *
 * A member whose last subscription ended is "away" from that moment; the stored history still
 * lists them as joined (MessageStore.joined) until their LEAVE is stored, and so does
 * {@link Presence.members}, with 0 connections.
 */
export interface Presence {
  /**
   * Records one more subscription of `user` to `room`; the user is no longer away.
   * @returns true when no live node had a subscription of that user to the room (the caller
   *   publishes JOIN, which the store skips when the history still lists the user as joined).
   * @throws StoreUnavailableError when the store cannot be reached.
   */
  join(room: string, user: string): Promise<boolean>;
  /**
   * Records one subscription fewer.
   * @returns true when it was the user's last on every live node: the user is away from now on,
   *   and their LEAVE is due once the grace has passed without a new subscription.
   */
  leave(room: string, user: string): Promise<boolean>;
  /** The room's members now, one entry per user, oldest first (away members: 0 connections). */
  members(room: string): Promise<MemberInfo[]>;
  /** Open subscriptions per room, for rooms that have any. */
  subscriptions(): Promise<Map<string, number>>;
  /**
   * Members whose LEAVE is owed now: joined in the stored history, with no subscription on a
   * live node, and away for at least `graceMs`. A joined member with no subscription anywhere
   * that nobody saw leave (its process was restarted or killed, its node died) becomes away at
   * this call: its LEAVE is owed `graceMs` later unless it comes back.
   */
  due(graceMs: number): Promise<Array<{ room: string; user: string }>>;
  close(): Promise<void>;
}

/** A member of a room: a user with one or more open subscriptions, or away within the grace. */
export interface MemberInfo {
  user: string;
  /** When the user joined (their stored JOIN, or their oldest open subscription), ms since the Unix epoch. */
  joinedAtMs: number;
  /** Open subscriptions of this user to the room; 0 while away (within the presence grace). */
  connections: number;
}

/** The store's record of joined members, for presence to list and account for away members. */
export type JoinedSource = (room?: string) => Promise<JoinedMember[]>;

const key = (room: string, user: string) => `${room}\u001f${user}`;

/**
 * Presence within one process (SQLite and memory stores). Subscriptions are counted in memory;
 * `joined` (the store's durable record of joined members, MessageStore.joined) supplies the away
 * members: after a restart, the members the previous process left joined. Without `joined`,
 * only open subscriptions are listed and nothing is ever due.
 */
export function createLocalPresence(joined?: JoinedSource): Presence {
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
      return [...byUser.values()].sort(
        (a, b) => a.joinedAtMs - b.joinedAtMs || (a.user < b.user ? -1 : 1),
      );
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
