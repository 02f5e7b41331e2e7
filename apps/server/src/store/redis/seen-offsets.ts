/**
 * What this node has seen of each room's log on Redis: the newest epoch and the highest offset
 * in it that the store acknowledged to it (an append's reply), delivered to it (the room's feed)
 * or reported to it (a history read). Offsets of one epoch never go back, so a store that later
 * reports a lower last offset in that same epoch has lost messages this node saw, and will give
 * their offsets to other messages: a Redis Cluster failover without the replica wait promoted a
 * replica that lacked them (a failover with the wait can still lose writes that were stored,
 * fanned out and never acknowledged). The append and read scripts (lua/append.lua, lua/read.lua)
 * receive {@link SeenOffsets.check}, taken before the call, and give the room a new epoch
 * atomically when they find the log behind it, so that the clients holding the old epoch are
 * refused instead of being served the new messages as if they continued the old ones.
 *
 * What it cannot cover: a rollback that no live node saw past (every node that acknowledged,
 * delivered or read the lost offsets has restarted since), and a log that grew past the lost
 * offsets before any node that saw them touched the room again. Clients are never trusted with
 * this: a client that claims a higher offset than the log has gets OUT_OF_RANGE, and cannot make
 * the room's epoch change for everyone else.
 *
 * One entry per room this node has touched, never dropped (rooms are never deleted): a few dozen
 * bytes each.
 */
export class SeenOffsets {
  private readonly rooms = new Map<string, { epoch: string; offset: number }>();

  /**
   * The script arguments for `room`: the epoch this node last saw it in and the highest offset it
   * saw there (`["", "0"]` when it has seen nothing, which no log is behind).
   */
  check(room: string): [epoch: string, offset: string] {
    const seen = this.rooms.get(room);
    return seen === undefined ? ["", "0"] : [seen.epoch, String(seen.offset)];
  }

  /**
   * The store's own answer (an append's reply, a read): `epoch` is the room's current epoch and
   * `offset` an offset of its log (0 for none).
   */
  current(room: string, epoch: string, offset: number): void {
    const seen = this.rooms.get(room);
    if (seen === undefined || seen.epoch !== epoch) this.rooms.set(room, { epoch, offset });
    else if (offset > seen.offset) seen.offset = offset;
  }

  /**
   * A message the room's feed delivered. It counts only in the epoch this node knows as current:
   * a feed message may arrive after a read or an append that already saw a newer epoch.
   */
  delivered(room: string, epoch: string, offset: number): void {
    // "": published by a node that predates epochs; nothing to compare it with.
    if (epoch === "") return;
    const seen = this.rooms.get(room);
    if (seen === undefined) this.rooms.set(room, { epoch, offset });
    else if (seen.epoch === epoch && offset > seen.offset) seen.offset = offset;
  }
}
