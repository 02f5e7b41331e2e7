/**
 * Who is subscribed to which room, across every node sharing a store. A user counts once per
 * room however many subscriptions (streams, tabs, nodes) it has; JOIN is published for the first
 * and LEAVE for the last.
 */
export interface Presence {
  /**
   * Records one more subscription of `user` to `room`.
   * @returns true when it is the user's first (the caller publishes JOIN).
   * @throws StoreUnavailableError when the store cannot be reached.
   */
  join(room: string, user: string): Promise<boolean>;
  /**
   * Records one subscription fewer.
   * @returns true when it was the user's last (the caller publishes LEAVE).
   */
  leave(room: string, user: string): Promise<boolean>;
  /** The room's members now, one entry per user, oldest first. */
  members(room: string): Promise<MemberInfo[]>;
  /** Open subscriptions per room, for rooms that have any. */
  subscriptions(): Promise<Map<string, number>>;
  close(): Promise<void>;
}

/** A member of a room: a user with one or more open subscriptions. */
export interface MemberInfo {
  user: string;
  /** When the user's oldest open subscription began, ms since the Unix epoch. */
  joinedAtMs: number;
  /** Open subscriptions of this user to the room. */
  connections: number;
}

/** Presence within one process (SQLite and memory stores). */
export function createLocalPresence(): Presence {
  // room → user → open subscriptions, oldest first (their start times).
  const rooms = new Map<string, Map<string, number[]>>();
  return {
    async join(room, user) {
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
      return true;
    },
    async members(room) {
      return [...(rooms.get(room) ?? new Map<string, number[]>())]
        .map(([user, starts]) => ({
          user,
          joinedAtMs: starts[0] as number,
          connections: starts.length,
        }))
        .sort((a, b) => a.joinedAtMs - b.joinedAtMs || (a.user < b.user ? -1 : 1));
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
    async close() {},
  };
}
