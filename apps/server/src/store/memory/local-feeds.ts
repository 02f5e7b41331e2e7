import type { LiveMessage, RoomFeed } from "../message-store.js";

/**
 * The change feeds of a store that only this process writes (SQLite, memory): appends are
 * announced synchronously after they commit, in commit order, so feeds see offsets in order.
 */
export class LocalFeeds {
  private readonly feeds = new Map<string, Set<RoomFeed>>();

  watch(room: string, feed: RoomFeed): () => void {
    let set = this.feeds.get(room);
    if (set === undefined) {
      set = new Set();
      this.feeds.set(room, set);
    }
    set.add(feed);
    return () => {
      set.delete(feed);
      if (set.size === 0 && this.feeds.get(room) === set) this.feeds.delete(room);
    };
  }

  /** Announces committed messages, in the order given. */
  announce(messages: Iterable<LiveMessage>): void {
    for (const message of messages) {
      const set = this.feeds.get(message.room);
      if (set === undefined) continue;
      for (const feed of set) feed.message(message);
    }
  }
}
