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
  /**
   * Claims the storing of `user`'s LEAVE from `room`, for presence shared by processes whose
   * store cannot refuse a LEAVE by itself (SQLite shared by the workers of WORKERS=N): granted
   * when the user has no subscription in any process and has been away for at least `graceMs`.
   * Until the returned function is called (once the LEAVE's append settled, whatever its
   * outcome), that member's joins and leaves wait, so no JOIN is skipped for a user whose LEAVE
   * is about to be stored. Absent where the store refuses such a LEAVE itself (Redis) or only
   * one process counts (memory, SQLite with one process).
   *
   * @returns the release, or undefined when the LEAVE is not owed now (nothing to release).
   * @throws StoreUnavailableError when the presence cannot be reached.
   */
  claimDeparture?(room: string, user: string, graceMs: number): Promise<(() => void) | undefined>;
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

/** The order of {@link Presence.members}: oldest first, then by user name. */
export function byJoinTime(a: MemberInfo, b: MemberInfo): number {
  return a.joinedAtMs - b.joinedAtMs || (a.user < b.user ? -1 : a.user > b.user ? 1 : 0);
}

/** The store's record of joined members, for presence to list and account for away members. */
export type JoinedSource = (room?: string) => Promise<JoinedMember[]>;
