import type { RedisClientType } from "redis";
import type { RoomFeed, StoredMessage } from "../message-store.js";
import { type RedisConnection, unavailable } from "./connection.js";
import { feedChannel } from "./keys.js";

/**
 * The rooms' change feeds on this node: the room's pub/sub channel, to which the append script
 * publishes every message it stores. One subscriber connection per node serves every room,
 * opened on the first watch. If it breaks, every feed is lost (subscribers resume from their
 * offsets) and the next watch opens a new connection: pub/sub cannot replay what it missed, so
 * it never reconnects by itself.
 */
export class RedisFeeds {
  private subscriber: RedisClientType | undefined;
  private connecting: Promise<RedisClientType> | undefined;
  private readonly feeds = new Map<string, { feeds: Set<RoomFeed>; last: number | undefined }>();

  constructor(
    private readonly connection: RedisConnection,
    /** Parses a message as the append script published it. */
    private readonly decode: (json: string) => StoredMessage,
    private readonly onError: (err: unknown, context: string) => void,
  ) {}

  /** See MessageStore.watch. @throws StoreUnavailableError. */
  async watch(room: string, feed: RoomFeed): Promise<() => void> {
    const sub = await this.open();
    let entry = this.feeds.get(room);
    if (entry === undefined) {
      entry = { feeds: new Set(), last: undefined };
      this.feeds.set(room, entry);
      try {
        // Resolves when Redis confirms the subscription: every later PUBLISH reaches us.
        await sub.subscribe(feedChannel(room), this.onMessage(room));
      } catch (err) {
        this.feeds.delete(room);
        throw unavailable(err);
      }
    }
    entry.feeds.add(feed);
    const watched = entry;
    return () => {
      watched.feeds.delete(feed);
      if (watched.feeds.size > 0 || this.feeds.get(room) !== watched) return;
      this.feeds.delete(room);
      if (this.subscriber?.isReady) {
        void this.subscriber.unsubscribe(feedChannel(room)).catch(() => {});
      }
    };
  }

  /** Closes the subscriber connection; feeds end without `lost`. */
  async close(): Promise<void> {
    const sub = this.subscriber;
    this.subscriber = undefined;
    this.feeds.clear();
    await sub?.close().catch(() => sub.destroy());
  }

  private loseAll(reason: string): void {
    const all = [...this.feeds.values()].flatMap((f) => [...f.feeds]);
    this.feeds.clear();
    const dead = this.subscriber;
    this.subscriber = undefined;
    this.connecting = undefined;
    dead?.destroy();
    for (const feed of all) feed.lost(new Error(reason));
  }

  private async open(): Promise<RedisClientType> {
    if (this.subscriber?.isReady) return this.subscriber;
    this.connecting ??= (async () => {
      const sub = this.connection.client.duplicate({
        disableOfflineQueue: true,
        socket: { connectTimeout: 2_000, reconnectStrategy: false },
      }) as RedisClientType;
      sub.on("error", (err: unknown) => {
        this.onError(err, "redis feed connection");
        if (this.subscriber === sub) this.loseAll(err instanceof Error ? err.message : String(err));
      });
      sub.on("end", () => {
        if (this.subscriber === sub) this.loseAll("feed connection closed");
      });
      try {
        await sub.connect();
      } catch (err) {
        this.connecting = undefined;
        sub.destroy();
        throw unavailable(err);
      }
      this.subscriber = sub;
      return sub;
    })();
    return this.connecting;
  }

  private onMessage(room: string) {
    return (json: string) => {
      const entry = this.feeds.get(room);
      if (entry === undefined) return;
      const message = this.decode(json);
      if (entry.last !== undefined && message.offset <= entry.last) return;
      if (entry.last !== undefined && message.offset !== entry.last + 1) {
        // Pub/sub lost something (it should not): subscribers resume from history instead.
        this.feeds.delete(room);
        for (const feed of entry.feeds) {
          feed.lost(new Error(`feed skipped from offset ${entry.last} to ${message.offset}`));
        }
        return;
      }
      entry.last = message.offset;
      for (const feed of entry.feeds) feed.message(message);
    };
  }
}
