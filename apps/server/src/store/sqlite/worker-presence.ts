import type { PrimaryLink } from "../../cluster-channel.js";
import { byJoinTime, type JoinedSource, type MemberInfo, type Presence } from "../presence.js";
import type { CoordinatorWire } from "./coordinator.js";

/**
 * Presence for a worker of WORKERS=N on SQLite: every subscription is counted by the primary
 * (coordinator.ts), so a user counts once per machine whichever workers their subscriptions are
 * on, and a LEAVE is stored once, after the grace, when the last of them ended. `joined` (the
 * database's record, MessageStore.joined) supplies the members away within the grace.
 *
 * Each call is one round trip to the primary (node:cluster IPC).
 */
export function createWorkerPresence(link: PrimaryLink, joined: JoinedSource): Presence {
  return {
    join: (room, user) => link.request("presence.join", { room, user, at: Date.now() }),
    leave: (room, user) => link.request("presence.leave", { room, user, at: Date.now() }),
    async members(room) {
      const [live, stored] = await Promise.all([
        link.request<CoordinatorWire["members"]>("presence.members", room),
        joined(room),
      ]);
      const byUser = new Map<string, MemberInfo>();
      for (const m of stored) {
        byUser.set(m.user, { user: m.user, joinedAtMs: m.joinedAtMs, connections: 0 });
      }
      for (const [user, connections, since] of live) {
        const prior = byUser.get(user);
        byUser.set(user, {
          user,
          joinedAtMs: Math.min(prior?.joinedAtMs ?? Number.POSITIVE_INFINITY, since),
          connections,
        });
      }
      return [...byUser.values()].sort(byJoinTime);
    },
    async subscriptions() {
      return new Map(
        await link.request<CoordinatorWire["subscriptions"]>("presence.subscriptions"),
      );
    },
    async due(graceMs) {
      const owed = await link.request<CoordinatorWire["due"]>("presence.due", graceMs);
      return owed.map(([room, user]) => ({ room, user }));
    },
    async claimDeparture(room, user, graceMs) {
      const granted = await link.request<boolean>("presence.claim", { room, user, graceMs });
      if (!granted) return undefined;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        link.notify("presence.release", { room, user });
      };
    },
    async close() {},
  };
}
