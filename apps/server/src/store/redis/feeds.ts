import type { RedisClientType } from "redis";
import type { LiveMessage, RoomFeed, StoredMessage } from "../message-store.js";
import { type RedisConnection, unavailable } from "./connection.js";
import { feedChannel } from "./keys.js";

/** A room log at one instant, as readLog (message-store.ts) read it. */
export interface LogRead {
  /** The log's epoch; "" for a room with no log. */
  epoch: string;
  /** The log's last offset (0 for none). */
  lastOffset: number;
  /**
   * The last offset before the epoch's first message (0 for a new log): the epoch's own messages
   * are the offsets after it. Undefined when not recorded (an epoch written before it was).
   */
  base: number | undefined;
  /** The page's messages, in the range's order. */
  messages: StoredMessage[];
}

/** A subscriber connection to one server, and the rooms it carries. */
interface Subscriber {
  client: RedisClientType | undefined;
  connecting: Promise<RedisClientType>;
  rooms: Set<string>;
}

/** One watched room on this node. */
interface Watched {
  feeds: Set<RoomFeed>;
  /**
   * The last offset delivered; undefined until the first message (or, ordered, until the base
   * of the epoch is known).
   */
  last: number | undefined;
  /** The epoch of the room's log the offsets are in ("" while unknown, or no log yet). */
  epoch: string;
  /** Ordered: epochs this feed has left (a reset log); their late announcements are dropped. */
  retired: Set<string>;
  /** Ordered: announcements that came before the base was read, in arrival order. */
  early: LiveMessage[] | undefined;
  owner: string;
  /** Resolves once the room's channel is subscribed (and, ordered, its base is known). */
  ready: Promise<void>;
  /** Ordered: announcements past a gap (offset → message), held until the gap is filled. */
  ahead: Map<number, LiveMessage>;
  /** Ordered: the timer that reads a gap from history, while one is set. */
  gapTimer: NodeJS.Timeout | undefined;
  /** Ordered: a gap's history read is under way. */
  reading: boolean;
}

/**
 * How long a gap in an ordered feed waits for the missing announcements before they are read
 * from history, ms: two nodes' replica waits on one master end together, so a message announced
 * after its successor usually follows within a few ms.
 */
export const GAP_HOLD_MS = 25;

/** History entries read per gap fill, at most. */
const FILL_PAGE = 500;

/**
 * Reads a page of a room's log with its epoch, last offset and epoch base, at one instant
 * (message-store.ts, readLog); `range` is `["XRANGE" | "XREVRANGE", start, end]`.
 */
export type ReadLog = (
  room: string,
  range: [string, string, string],
  count: number,
) => Promise<LogRead>;

/**
 * The rooms' change feeds on this node: the room's sharded pub/sub channel (SSUBSCRIBE), on
 * which every stored message is announced (SPUBLISH). Sharded channels are used on a single
 * server too (Redis 7 serves them there as well): one code path, and on a cluster a room's
 * messages travel only within the shard that owns the room instead of being broadcast to every
 * node as classic PUBLISH is.
 *
 * Unordered (no replica wait): the append script announces each message as it stores it, so the
 * channel carries a room's messages in offset order, every one of them; a gap means pub/sub lost
 * something, and the room's feed ends (its subscribers resume from history).
 *
 * Ordered (`REDIS_WAIT_REPLICAS` > 0): the node that stored a message announces it once replicas
 * acknowledged it (message-store.ts), so announcements from several nodes may arrive out of
 * offset order, and a message whose wait failed is never announced. The feed delivers in offset
 * order all the same, each offset once: an announcement past a gap is held; if the missing ones
 * are not announced within {@link GAP_HOLD_MS}, they are read from the room's history (a
 * message acknowledged by a replica means every earlier write on that master reached it too, so
 * what the gap holds is on that replica as well, acknowledged or not), and a gap history cannot
 * fill either (trimmed, or lost in a failover) ends the room's feed. The first offset delivered
 * follows the room's last offset when the watch began (read once the channel is subscribed):
 * every message stored after that is delivered, in order, once it or a later one is
 * acknowledged.
 *
 * Both deliver in offset order within each epoch (store/epoch.ts): a message of a new epoch is a
 * new log (FLUSHALL, offsets rolled back), whose offsets start again. Unordered, the new epoch's
 * first announcement is delivered as it comes. Ordered, the feed reads the new epoch's base (the
 * last offset before its first message, lua/append.lua) and delivers from there, filling gaps as
 * before; late announcements of the epochs it left are dropped, and a log reset again while the
 * feed reads it ends the feed. Messages read from history carry the epoch the feed delivers.
 *
 * One subscriber connection per server (one server; on a cluster, the master of each watched
 * room's slot) serves every room it owns, opened on the first watch. If it breaks (the server
 * died, a failover moved the slot), the feeds of its rooms are lost (subscribers resume from
 * their offsets) and the next watch opens a new connection: pub/sub cannot replay what it
 * missed, so it never reconnects by itself.
 */
export class RedisFeeds {
  private readonly subscribers = new Map<string, Subscriber>();
  private readonly feeds = new Map<string, Watched>();

  constructor(
    private readonly connection: RedisConnection,
    /** Parses a message as the append script stored and announced it. */
    private readonly decode: (json: string) => LiveMessage,
    private readonly onError: (err: unknown, context: string) => void,
    /**
     * Given: the feed is ordered, its announcements may come out of order or not at all (a
     * replica wait; see the class), and it reads its base and gaps with this.
     */
    private readonly history?: ReadLog,
  ) {}

  /** See MessageStore.watch. @throws StoreUnavailableError. */
  async watch(room: string, feed: RoomFeed): Promise<() => void> {
    const watched = this.feeds.get(room) ?? this.subscribe(room);
    // Added at once: a message may reach it before the watch resolves, none after it is missed.
    watched.feeds.add(feed);
    try {
      await watched.ready;
    } catch (err) {
      watched.feeds.delete(feed);
      throw unavailable(err);
    }
    if (this.feeds.get(room) !== watched) {
      // Lost (the connection broke) while another watcher set it up: `lost` was called.
      watched.feeds.delete(feed);
      throw unavailable("the room's feed broke as it opened");
    }
    return () => {
      watched.feeds.delete(feed);
      if (watched.feeds.size === 0) this.stop(room, watched);
    };
  }

  /** Starts watching `room`: subscribes its channel (and, ordered, reads its base offset). */
  private subscribe(room: string): Watched {
    let owner: string;
    try {
      owner = this.connection.ownerOf(feedChannel(room));
    } catch (err) {
      throw unavailable(err);
    }
    const watched: Watched = {
      feeds: new Set(),
      last: undefined,
      epoch: "",
      retired: new Set(),
      early: this.history === undefined ? undefined : [],
      owner,
      ready: Promise.resolve(),
      ahead: new Map(),
      gapTimer: undefined,
      reading: false,
    };
    this.feeds.set(room, watched);
    watched.ready = (async () => {
      let subscribed: RedisClientType | undefined;
      try {
        const sub = await this.open(owner);
        if (this.feeds.get(room) !== watched) throw new Error("the room's feed was stopped");
        this.subscribers.get(owner)?.rooms.add(room);
        // Resolves when Redis confirms the subscription: every later SPUBLISH reaches us.
        await sub.sSubscribe(feedChannel(room), (json: string) =>
          this.announced(room, watched, json),
        );
        subscribed = sub;
        if (this.history !== undefined) {
          const log = await this.history(room, ["XRANGE", "-", "+"], 0);
          if (this.feeds.get(room) !== watched) throw new Error("the room's feed was stopped");
          watched.epoch = log.epoch;
          watched.last = log.lastOffset;
          const early = watched.early ?? [];
          watched.early = undefined;
          for (const message of early) this.accept(room, watched, message);
        }
      } catch (err) {
        if (this.feeds.get(room) === watched) this.feeds.delete(room);
        this.subscribers.get(owner)?.rooms.delete(room);
        if (subscribed?.isReady) void subscribed.sUnsubscribe(feedChannel(room)).catch(() => {});
        // A MOVED reply: the slot map is stale (a failover); refresh it for the retry.
        this.connection.failed();
        throw unavailable(err);
      }
    })();
    // A failed set-up is reported to every watcher that awaits it.
    watched.ready.catch(() => {});
    return watched;
  }

  /** Stops watching `room` (its last feed stopped); its feeds get nothing more. */
  private stop(room: string, watched: Watched): void {
    if (this.feeds.get(room) !== watched) return;
    this.feeds.delete(room);
    clearTimeout(watched.gapTimer);
    const sub = this.subscribers.get(watched.owner);
    sub?.rooms.delete(room);
    if (sub?.client?.isReady) void sub.client.sUnsubscribe(feedChannel(room)).catch(() => {});
  }

  /** Ends the feeds of `room`: stops watching it, then calls each feed's `lost`. */
  private end(room: string, watched: Watched, reason: string): void {
    if (this.feeds.get(room) !== watched) return;
    this.stop(room, watched);
    this.connection.failed();
    for (const feed of watched.feeds) feed.lost(new Error(reason));
  }

  /** Closes the subscriber connections; feeds end without `lost`. */
  async close(): Promise<void> {
    const subs = [...this.subscribers.values()];
    this.subscribers.clear();
    for (const watched of this.feeds.values()) clearTimeout(watched.gapTimer);
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
      clearTimeout(entry.gapTimer);
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
    clearTimeout(entry.gapTimer);
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

  /** A message announced on `room`'s channel. */
  private announced(room: string, watched: Watched, json: string): void {
    if (this.feeds.get(room) !== watched) return;
    const message = this.decode(json);
    if (this.history !== undefined) {
      // Before the base is known everything is held, in arrival order.
      if (watched.early !== undefined) watched.early.push(message);
      else this.accept(room, watched, message);
      return;
    }
    // A new epoch is a new log (FLUSHALL, offsets rolled back): its offsets start again. ("":
    // published by a node that predates epochs, during a rolling upgrade.)
    if (message.epoch !== watched.epoch && message.epoch !== "") {
      watched.epoch = message.epoch;
      watched.last = undefined;
    }
    const { last } = watched;
    if (last !== undefined && message.offset <= last) return;
    if (last !== undefined && message.offset !== last + 1) {
      // The script announces every message in order: pub/sub lost something (it should not).
      // Subscribers resume from history instead.
      this.end(room, watched, `feed skipped from offset ${last} to ${message.offset}`);
      return;
    }
    this.deliver(watched, message);
  }

  /**
   * Ordered, once the base is known: holds an announcement of the epoch delivered if it is past
   * the last offset delivered, and delivers what follows on; one of a new epoch starts that
   * epoch (rebase).
   */
  private accept(room: string, watched: Watched, announced: LiveMessage): void {
    // "": a node that predates epochs; its messages are in the log the feed delivers.
    const message = announced.epoch === "" ? { ...announced, epoch: watched.epoch } : announced;
    if (message.epoch !== watched.epoch) {
      if (watched.retired.has(message.epoch)) return;
      // A new log: what is held of the old one will never follow on from the new one's offsets.
      if (watched.epoch !== "") watched.retired.add(watched.epoch);
      watched.epoch = message.epoch;
      watched.last = undefined;
      watched.ahead.clear();
      clearTimeout(watched.gapTimer);
      watched.gapTimer = undefined;
      watched.ahead.set(message.offset, message);
      void this.rebase(room, watched, message.epoch);
      return;
    }
    const { last } = watched;
    // While the new epoch's base is read, everything of it is held.
    if (last === undefined) watched.ahead.set(message.offset, message);
    else if (message.offset > last) {
      watched.ahead.set(message.offset, message);
      this.advance(room, watched);
    }
  }

  /** Ordered: reads the base of `epoch`, the feed's new one, then delivers from there. */
  private async rebase(room: string, watched: Watched, epoch: string): Promise<void> {
    let log: LogRead;
    try {
      log = await (this.history as ReadLog)(room, ["XRANGE", "-", "+"], 0);
    } catch (err) {
      this.end(room, watched, `feed's new epoch ${epoch} unread: ${errorText(err)}`);
      return;
    }
    if (this.feeds.get(room) !== watched || watched.epoch !== epoch) return;
    if (log.epoch !== epoch) {
      // Reset again since: subscribers resume from history, which names the current log.
      this.end(room, watched, `feed's log changed epoch from ${epoch} to ${log.epoch}`);
      return;
    }
    // An epoch written before its base was: from the first message of it announced.
    watched.last = log.base ?? Math.min(...watched.ahead.keys()) - 1;
    this.advance(room, watched);
  }

  private deliver(watched: Watched, message: LiveMessage): void {
    watched.last = message.offset;
    for (const feed of watched.feeds) feed.message(message);
  }

  /**
   * Ordered: delivers the held messages that follow the last one delivered; if a gap remains,
   * sets the timer that reads it from history.
   */
  private advance(room: string, watched: Watched): void {
    for (;;) {
      const last = watched.last as number;
      const next = watched.ahead.get(last + 1);
      if (next === undefined) break;
      watched.ahead.delete(last + 1);
      this.deliver(watched, next);
      // A feed's callback may stop the watch (its last subscriber left).
      if (this.feeds.get(room) !== watched) return;
    }
    const last = watched.last as number;
    for (const offset of watched.ahead.keys()) if (offset <= last) watched.ahead.delete(offset);
    if (watched.ahead.size === 0) {
      clearTimeout(watched.gapTimer);
      watched.gapTimer = undefined;
    } else if (watched.gapTimer === undefined && !watched.reading) {
      watched.gapTimer = setTimeout(() => void this.fill(room, watched), GAP_HOLD_MS);
    }
  }

  /** Ordered: reads the gap before the first held message from history, then delivers on. */
  private async fill(room: string, watched: Watched): Promise<void> {
    watched.gapTimer = undefined;
    if (this.feeds.get(room) !== watched || watched.ahead.size === 0) return;
    if (watched.last === undefined) return; // a new epoch's base is being read (rebase)
    const { epoch, last: from } = watched;
    const upto = Math.min(...watched.ahead.keys());
    watched.reading = true;
    let log: LogRead;
    try {
      log = await (this.history as ReadLog)(
        room,
        ["XRANGE", `(${from}-0`, `(${upto}-0`],
        Math.min(upto - from - 1, FILL_PAGE),
      );
    } catch (err) {
      watched.reading = false;
      this.end(room, watched, `feed gap after offset ${from} unread: ${errorText(err)}`);
      return;
    }
    watched.reading = false;
    if (this.feeds.get(room) !== watched) return;
    if (watched.epoch !== epoch) {
      // A new epoch announced meanwhile: what was read is of the old one; go on with the new
      // one, whose base may have been read while this read held the gap timer back.
      if (watched.last !== undefined) this.advance(room, watched);
      return;
    }
    if (log.epoch !== epoch) {
      // The log was reset under the gap: what history holds is another log's.
      this.end(room, watched, `feed's log changed epoch from ${epoch} to ${log.epoch}`);
      return;
    }
    for (const message of log.messages) {
      if (message.offset > from) watched.ahead.set(message.offset, { ...message, epoch });
    }
    this.advance(room, watched);
    if (this.feeds.get(room) === watched && watched.last === from && watched.ahead.size > 0) {
      // History does not hold the next offset either (trimmed, or lost in a failover).
      this.end(room, watched, `feed skipped from offset ${from} to ${upto}: not in history`);
    }
  }
}

/** An error's message. */
function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Closes a client at once (it may be closed already). */
function destroy(client: RedisClientType | undefined): void {
  try {
    client?.destroy();
  } catch {
    // Already closed.
  }
}
