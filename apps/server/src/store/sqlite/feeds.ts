import type { LiveMessage, RoomFeed, StoredMessage } from "../message-store.js";

/** What the feeds read of the database: the log is the source of truth, not the wake-ups. */
export interface LogReader {
  /** The room's newest offset and its log's epoch now (0 and "" for a room with no log). */
  position(room: string): { last: number; epoch: string };
  /** Up to `limit` messages of `room` after `offset`, oldest first. */
  after(room: string, offset: number, limit: number): StoredMessage[];
}

/**
 * How this process tells the primary of WORKERS=N which rooms it follows, so that the wake-ups
 * of the other workers' appends reach it (store/sqlite/coordinator.ts). Absent when this process
 * is the database's only writer.
 */
export interface FollowLink {
  /** Resolves once the primary forwards this room's wake-ups here. */
  follow(room: string): Promise<void>;
  unfollow(room: string): void;
}

/**
 * A wake-up as the workers of WORKERS=N send it through the primary: another worker committed
 * `room` up to `offset`; with the trace contexts of the appends it committed that carry one
 * (MessageDraft.trace: tracing on, sampled), as `[offset, traceparent]` pairs.
 */
export type WakeEntry =
  | [room: string, offset: number]
  | [room: string, offset: number, traces: Array<[number, string]>];

/** A room followed in this process. */
interface Followed {
  feeds: Set<RoomFeed>;
  /** The last offset handed to the feeds; undefined until the follow is active. */
  last: number | undefined;
  /**
   * The epoch of the room's log, "" until it has one. Fixed with the log's first message and
   * never changed while the database lives (store/epoch.ts), so read once.
   */
  epoch: string;
  ready: Promise<void>;
  /**
   * Trace contexts of messages another worker committed, by offset, until the catch-up that
   * reads them hands them out (with the message: LiveMessage.trace). Undefined while none.
   */
  traces: Map<number, string> | undefined;
}

/** Messages read per query when catching up. */
const PAGE = 500;

/**
 * The SQLite store's change feeds: each followed room's feeds get every message of the room's
 * log after the offset they started at, once, in offset order, whichever process stored it.
 *
 * The log in the database is the source of truth; what arrives from elsewhere only says "read
 * again". Each room remembers the last offset it handed out. A message this process committed
 * is handed out at once when it is the next one; a gap before it (another worker committed in
 * between) is first read from the database. A wake-up (another worker committed up to some
 * offset) reads what is new from the last offset handed out. So a wake-up that comes late, twice
 * or out of order costs a read and loses nothing, and one that never comes (a worker killed
 * between its commit and its notice) is made up by {@link SqliteFeeds.resync}, which the primary
 * asks for when a worker dies, or by the room's next message. WAL readers do not wait for the
 * writer.
 */
export class SqliteFeeds {
  private readonly rooms = new Map<string, Followed>();

  constructor(
    private readonly log: LogReader,
    private readonly link?: FollowLink,
  ) {}

  /**
   * Hands `feed` every message of `room` committed after this resolves (and possibly a few just
   * before). See MessageStore.watch.
   * @returns a function that stops the feed.
   */
  async watch(room: string, feed: RoomFeed): Promise<() => void> {
    let state = this.rooms.get(room);
    if (state === undefined) state = this.follow(room);
    const followed = state;
    followed.feeds.add(feed);
    try {
      await followed.ready;
    } catch (err) {
      this.stop(room, followed, feed);
      throw err;
    }
    return () => this.stop(room, followed, feed);
  }

  /** Messages this process committed, in commit order. */
  announce(messages: readonly LiveMessage[]): void {
    for (const message of messages) {
      const state = this.rooms.get(message.room);
      if (state?.last === undefined || message.offset <= state.last) continue;
      // Another process committed in between: read those first (this one comes with them).
      if (message.offset > state.last + 1) this.catchUp(message.room, state);
      else this.deliver(state, message);
    }
  }

  /**
   * Another process committed `room` up to `offset`: hand out what is new, each message with
   * its trace context when `traces` names one for its offset (see {@link WakeEntry}).
   */
  wake(room: string, offset: number, traces?: ReadonlyArray<[number, string]>): void {
    const state = this.rooms.get(room);
    if (state?.last === undefined || offset <= state.last) return;
    if (traces !== undefined) {
      state.traces ??= new Map();
      for (const [at, trace] of traces) if (at > state.last) state.traces.set(at, trace);
    }
    this.catchUp(room, state);
  }

  /** Reads what is new in every followed room (a wake-up may have been lost). */
  resync(): void {
    for (const [room, state] of this.rooms) if (state.last !== undefined) this.catchUp(room, state);
  }

  /** Rooms followed now. */
  get size(): number {
    return this.rooms.size;
  }

  private follow(room: string): Followed {
    const state: Followed = {
      feeds: new Set(),
      last: undefined,
      epoch: "",
      ready: Promise.resolve(),
      traces: undefined,
    };
    this.rooms.set(room, state);
    const start = () => {
      // Stopped before it started: nothing to read.
      if (this.rooms.get(room) !== state) return;
      const at = this.log.position(room);
      state.last = at.last;
      state.epoch = at.epoch;
    };
    if (this.link === undefined) start();
    else state.ready = this.link.follow(room).then(start);
    return state;
  }

  private stop(room: string, state: Followed, feed: RoomFeed): void {
    if (!state.feeds.delete(feed) || state.feeds.size > 0) return;
    if (this.rooms.get(room) !== state) return;
    this.rooms.delete(room);
    this.link?.unfollow(room);
  }

  /** Hands out every message of the room after the last one handed out (one query a page). */
  private catchUp(room: string, state: Followed): void {
    for (;;) {
      const messages = this.log.after(room, state.last as number, PAGE);
      // The log began since the follow did: its epoch is there now (it was written with the
      // first message, in the same transaction).
      if (messages.length > 0 && state.epoch === "") state.epoch = this.log.position(room).epoch;
      for (const m of messages) {
        if (this.rooms.get(room) !== state) return;
        const trace = state.traces?.get(m.offset);
        if (trace === undefined) this.deliver(state, { ...m, epoch: state.epoch });
        else this.deliver(state, { ...m, epoch: state.epoch, trace });
      }
      if (messages.length < PAGE) break;
    }
    // What was handed out (or read before its wake-up came) needs its trace no more.
    if (state.traces !== undefined) {
      for (const at of state.traces.keys())
        if (at <= (state.last as number)) state.traces.delete(at);
      if (state.traces.size === 0) state.traces = undefined;
    }
  }

  private deliver(state: Followed, message: LiveMessage): void {
    state.last = message.offset;
    if (state.epoch === "") state.epoch = message.epoch;
    for (const feed of state.feeds) feed.message(message);
  }
}
