import type { RedisClientType } from "redis";
import type { LiveMessage, RoomFeed } from "../message-store.js";
import { type RedisConnection, unavailable } from "./connection.js";
import { feedChannel } from "./keys.js";

/** A subscriber connection to one server, and the rooms it carries. */
interface Subscriber {
  client: RedisClientType | undefined;
  connecting: Promise<RedisClientType>;
  rooms: Set<string>;
}

/**
 * The rooms' change feeds on this node: the room's sharded pub/sub channel (SSUBSCRIBE), to which
 * the append script publishes every message it stores (SPUBLISH). Sharded channels are used on a
 * single server too (Redis 7 serves them there as well): one code path, and on a cluster a
 * room's messages travel only within the shard that owns the room instead of being broadcast to
 * every node as classic PUBLISH is.
 *
 * One subscriber connection per server (one server; on a cluster, the master of each watched
 * room's slot) serves every room it owns, opened on the first watch. If it breaks (the server
 * died, a failover moved the slot), the feeds of its rooms are lost (subscribers resume from
 * their offsets) and the next watch opens a new connection: pub/sub cannot replay what it
 * missed, so it never reconnects by itself.
 */
export class RedisFeeds {
  private readonly subscribers = new Map<string, Subscriber>();
  private readonly feeds = new Map<
    string,
    { feeds: Set<RoomFeed>; last: number | undefined; epoch: string; owner: string }
  >();

  constructor(
    private readonly connection: RedisConnection,
    /** Parses a message as the append script published it. */
    private readonly decode: (json: string) => LiveMessage,
    private readonly onError: (err: unknown, context: string) => void,
  ) {}

  /** See MessageStore.watch. @throws StoreUnavailableError. */
  async watch(room: string, feed: RoomFeed): Promise<() => void> {
    let entry = this.feeds.get(room);
    if (entry === undefined) {
      let owner: string;
      try {
        owner = this.connection.ownerOf(feedChannel(room));
      } catch (err) {
        throw unavailable(err);
      }
      const sub = await this.open(owner);
      entry = this.feeds.get(room);
      if (entry === undefined) {
        entry = { feeds: new Set(), last: undefined, epoch: "", owner };
        this.feeds.set(room, entry);
        this.subscribers.get(owner)?.rooms.add(room);
        try {
          // Resolves when Redis confirms the subscription: every later SPUBLISH reaches us.
          await sub.sSubscribe(feedChannel(room), this.onMessage(room));
        } catch (err) {
          if (this.feeds.get(room) === entry) this.feeds.delete(room);
          this.subscribers.get(owner)?.rooms.delete(room);
          // A MOVED reply: the slot map is stale (a failover); refresh it for the retry.
          this.connection.failed();
          throw unavailable(err);
        }
      }
    }
    entry.feeds.add(feed);
    const watched = entry;
    return () => {
      watched.feeds.delete(feed);
      if (watched.feeds.size > 0 || this.feeds.get(room) !== watched) return;
      this.feeds.delete(room);
      const sub = this.subscribers.get(watched.owner);
      sub?.rooms.delete(room);
      if (sub?.client?.isReady) void sub.client.sUnsubscribe(feedChannel(room)).catch(() => {});
    };
  }

  /** Closes the subscriber connections; feeds end without `lost`. */
  async close(): Promise<void> {
    const subs = [...this.subscribers.values()];
    this.subscribers.clear();
    this.feeds.clear();
    await Promise.all(
      subs.map(async (s) => {
        const client = s.client ?? (await s.connecting.catch(() => undefined));
        await client?.close().catch(() => client.destroy());
      }),
    );
  }

  /** Ends the feeds of every room of the connection to `owner`, which broke. */
  private lose(owner: string, sub: Subscriber, reason: string): void {
    if (this.subscribers.get(owner) !== sub) return;
    this.subscribers.delete(owner);
    destroy(sub.client);
    const lost: RoomFeed[] = [];
    for (const room of sub.rooms) {
      const entry = this.feeds.get(room);
      if (entry === undefined || entry.owner !== owner) continue;
      this.feeds.delete(room);
      lost.push(...entry.feeds);
    }
    this.connection.failed();
    for (const feed of lost) feed.lost(new Error(reason));
  }

  /** Ends the feeds of one room of the connection to `owner`. */
  private loseRoom(owner: string, room: string, reason: string): void {
    const entry = this.feeds.get(room);
    this.subscribers.get(owner)?.rooms.delete(room);
    if (entry === undefined || entry.owner !== owner) return;
    this.feeds.delete(room);
    this.connection.failed();
    for (const feed of entry.feeds) feed.lost(new Error(reason));
  }

  private async open(owner: string): Promise<RedisClientType> {
    const existing = this.subscribers.get(owner);
    if (existing !== undefined) {
      if (existing.client === undefined) return existing.connecting;
      if (existing.client.isReady) return existing.client;
      this.lose(owner, existing, "feed connection closed");
    }
    const client = this.connection.subscriber(owner);
    const sub: Subscriber = {
      client: undefined,
      connecting: Promise.resolve(client),
      rooms: new Set(),
    };
    client.on("error", (err: unknown) => {
      this.onError(err, "redis feed connection");
      this.lose(owner, sub, err instanceof Error ? err.message : String(err));
    });
    client.on("end", () => this.lose(owner, sub, "feed connection closed"));
    // The server dropped a room's subscription: its slot moved to another master (a manual
    // failover, a resharding). That room's feed is lost; the next watch subscribes at the new
    // owner.
    client.on("sharded-channel-moved", (channel: string) => {
      const room = [...sub.rooms].find((r) => feedChannel(r) === channel);
      if (room !== undefined) this.loseRoom(owner, room, `feed channel ${channel} moved`);
    });
    sub.connecting = (async () => {
      try {
        await client.connect();
      } catch (err) {
        if (this.subscribers.get(owner) === sub) this.subscribers.delete(owner);
        destroy(client);
        this.connection.failed();
        throw unavailable(err);
      }
      sub.client = client;
      return client;
    })();
    this.subscribers.set(owner, sub);
    return sub.connecting;
  }

  private onMessage(room: string) {
    return (json: string) => {
      const entry = this.feeds.get(room);
      if (entry === undefined) return;
      const message = this.decode(json);
      // A new epoch is a new log (FLUSHALL, offsets rolled back): its offsets start again. ("":
      // published by a node that predates epochs, during a rolling upgrade.)
      if (message.epoch !== entry.epoch && message.epoch !== "") {
        entry.epoch = message.epoch;
        entry.last = undefined;
      }
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

/** Closes a client at once (it may be closed already). */
function destroy(client: RedisClientType | undefined): void {
  try {
    client?.destroy();
  } catch {
    // Already closed.
  }
}
