import type { Client } from "@connectrpc/connect";
import {
  type AfterReset,
  type BackoffOptions,
  type ChatSession,
  createBackoff,
  createChatSession,
  type HistoryReset,
  type SubscriptionState,
} from "@switchboard/client/web";
import { type ChatService, type Message, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { formatCallError, isOwnCancel } from "./connect-errors.ts";
import { STREAM_BACKOFF } from "./follow-stream.ts";
import { toDate } from "./format.ts";

/**
 * The rooms this page joined (`room` NUL `user`): a feed made again for the same room and user
 * (the protocol switched, the page came back to the room) starts joined, not watching.
 */
const joinedInThisPage = new Set<string>();

/** Messages per GetHistory page, at the start and for each scroll back. */
export const HISTORY_PAGE = 50;
/** Most messages kept in memory; older ones are dropped and can be loaded again by scrolling up. */
export const MAX_FEED_MESSAGES = 5000;

/** A member as the page shows them. */
export interface FeedMember {
  user: string;
  joinedAt: Date | undefined;
  /** Open subscriptions of this user to the room (1 for a member known from its JOIN only). */
  connections: number;
}

/** Where the feed is: loading, live, retrying after a drop, or stopped (an error ends it). */
export type FeedStatus = SubscriptionState;

/** The room's history was reset under the feed (see {@link RoomFeed.historyReset}). */
export interface FeedReset {
  /** When the feed learned of it. */
  at: Date;
  /** The epoch of the log the page had shown, gone now. */
  staleEpoch: string;
  /** The room's log now: its epoch and offsets ("" and 0 when it has none). */
  epoch: string;
  firstOffset: bigint;
  lastOffset: bigint;
}

/**
 * One room's live feed and send box: the newest page of history, then libs/client's ChatSession
 * from its last offset. The session follows the room with SubscribeMessages, reconnecting with
 * backoff and resuming from the last offset it delivered (no gap, no duplicate across drops and
 * restarts), and sends with SendMessage, each message under its own client_message_id, retried
 * until the server acknowledges it, so a message typed during an outage is stored once when the
 * server is back. Older pages load with GetHistory; the member list starts from ListMembers and
 * follows JOIN and LEAVE.
 *
 * The feed's position is an offset in the room log's epoch (from its first page). When the room's
 * history was reset (the server lost its data, or a failover reused offsets), the messages shown
 * are of a log that is gone: the feed drops them, shows the new log's newest page and goes on
 * from its end, and says so ({@link RoomFeed.historyReset}) rather than mixing the two logs.
 */
export class RoomFeed {
  readonly room: string;
  readonly user: string;
  #messages = $state.raw<Message[]>([]);
  #members = $state.raw<FeedMember[]>([]);
  #status = $state<FeedStatus>("connecting");
  #hasOlder = $state(false);
  #loadingOlder = $state(false);
  #lastOffset = $state(0n);
  #error = $state<string | undefined>(undefined);
  #olderError = $state<string | undefined>(undefined);
  #pendingSends = $state(0);
  #historyReset = $state<FeedReset | undefined>(undefined);
  #watching = $state(true);
  readonly #joinKey: string;
  #epoch = $state("");
  readonly #client: Client<typeof ChatService>;
  readonly #backoff: Partial<BackoffOptions>;
  #abort: AbortController | undefined;
  /** The session, once the first page is loaded. */
  #session = Promise.withResolvers<ChatSession>();

  constructor(
    client: Client<typeof ChatService>,
    room: string,
    user: string,
    options: { backoff?: Partial<BackoffOptions> } = {},
  ) {
    this.#client = client;
    this.room = room;
    this.user = user;
    this.#backoff = options.backoff ?? STREAM_BACKOFF;
    this.#joinKey = `${room}\u0000${user}`;
    this.#watching = !joinedInThisPage.has(this.#joinKey);
  }

  /** Oldest first; stored messages only (offset > 0), CHAT, JOIN and LEAVE. */
  get messages(): readonly Message[] {
    return this.#messages;
  }

  get members(): readonly FeedMember[] {
    return this.#members;
  }

  get status(): FeedStatus {
    return this.#status;
  }

  /** The newest offset in the feed (0 before any message). */
  get lastOffset(): bigint {
    return this.#lastOffset;
  }

  /** The epoch of the room log the feed shows ("" until known). */
  get epoch(): string {
    return this.#epoch;
  }

  /**
   * True while the page follows the room without joining it (SubscribeRequest.watch_only): the
   * user is not a member and no JOIN is stored for them until they send or {@link RoomFeed.join}.
   */
  get watching(): boolean {
    return this.#watching;
  }

  /** Joins the room: the feed's stream becomes a joined one, from where it is (no gap). */
  join(): void {
    this.#watching = false;
    joinedInThisPage.add(this.#joinKey);
    void this.#session.promise.then((session) => session.join()).catch(() => {});
  }

  /** Messages sent and not yet stored (queued, in flight, or waiting to be retried). */
  get pendingSends(): number {
    return this.#pendingSends;
  }

  /** Older messages exist before the first one shown. */
  get hasOlder(): boolean {
    return this.#hasOlder;
  }

  get loadingOlder(): boolean {
    return this.#loadingOlder;
  }

  /** Why the feed stopped (a code that retrying cannot fix), as "code: message". */
  get error(): string | undefined {
    return this.#error;
  }

  /** Why the last attempt to load older messages failed. */
  get olderError(): string | undefined {
    return this.#olderError;
  }

  /** The newest reset of the room's history while the feed was open; undefined if none. */
  get historyReset(): FeedReset | undefined {
    return this.#historyReset;
  }

  /** Forgets {@link RoomFeed.historyReset} (the reader has seen the notice). */
  dismissHistoryReset(): void {
    this.#historyReset = undefined;
  }

  /** Starts loading and following the room; {@link RoomFeed.stop} ends it. */
  start(): void {
    if (this.#abort !== undefined) return;
    this.#abort = new AbortController();
    void this.#run(this.#abort.signal);
  }

  /** Cancels the subscription and every call in flight. */
  stop(): void {
    this.#abort?.abort();
    this.#abort = undefined;
  }

  /**
   * Sends one message through the session: a fresh idempotency key, retried with the same key
   * through disconnects until the server stores it. Resolves to the stored offset; the message
   * itself reaches the feed through the subscription, like everyone else's, once.
   *
   * @throws ConnectError for a message the server refuses (INVALID_ARGUMENT for an empty or
   *   oversized one); Canceled when the feed is stopped first.
   */
  async send(content: string): Promise<bigint> {
    // The session joins before it sends (the user's JOIN is stored before their message).
    this.#watching = false;
    joinedInThisPage.add(this.#joinKey);
    this.#pendingSends++;
    try {
      const session = await this.#session.promise;
      return (await session.send(content)).offset;
    } finally {
      this.#pendingSends--;
    }
  }

  /** Loads the page before the oldest message shown; does nothing while one is loading. */
  async loadOlder(): Promise<void> {
    const oldest = this.#messages[0];
    if (this.#loadingOlder || !this.#hasOlder || oldest === undefined) return;
    this.#loadingOlder = true;
    this.#olderError = undefined;
    const signal = this.#abort?.signal;
    try {
      const page = await this.#client.getHistory(
        { room: this.room, beforeOffset: oldest.offset, limit: HISTORY_PAGE },
        signal === undefined ? {} : { signal },
      );
      const first = this.#messages[0]?.offset ?? 0n;
      this.#messages = [...page.messages.filter((m) => m.offset < first), ...this.#messages];
      this.#hasOlder = page.hasMore;
    } catch (err) {
      if (!isOwnCancel(err, signal)) this.#olderError = formatCallError(err);
    } finally {
      this.#loadingOlder = false;
    }
  }

  async #run(signal: AbortSignal): Promise<void> {
    let since: { lastOffset: bigint; epoch: string };
    try {
      since = await this.#loadNewestPage(signal);
    } catch (err) {
      this.#session.reject(err);
      this.#session.promise.catch(() => {});
      return;
    }
    void this.#refreshMembers(signal);
    const session = createChatSession(this.#client, {
      room: this.room,
      user: this.user,
      sinceOffset: since.lastOffset,
      epoch: since.epoch,
      // Looking is not joining: the page joins when the user sends or asks to.
      watchOnly: this.#watching,
      backoff: this.#backoff,
      signal,
      onMessage: (message) => this.#receive(message),
      onHistoryReset: (reset) => this.#reset(reset, signal),
      onStateChange: (state) => {
        if (signal.aborted) return;
        this.#status = state.status;
        // Presence may have changed while the stream was down.
        if (state.status === "live") void this.#refreshMembers(signal);
        if (state.status === "closed" && state.error !== undefined) {
          this.#error = formatCallError(state.error);
        }
      },
    });
    this.#session.resolve(session);
    try {
      await session.closed;
    } catch (err) {
      if (signal.aborted) return;
      this.#status = "closed";
      this.#error = formatCallError(err);
    }
  }

  /**
   * The room's log was reset: what the page shows is of a log that is gone. Show the new log's
   * newest page instead, and let the session go on from its end (the page is loaded meanwhile;
   * messages that arrive first are kept after it).
   */
  #reset(reset: HistoryReset, signal: AbortSignal): AfterReset {
    this.#historyReset = {
      at: new Date(),
      staleEpoch: reset.staleEpoch,
      epoch: reset.epoch,
      firstOffset: reset.firstOffset,
      lastOffset: reset.lastOffset,
    };
    this.#messages = [];
    this.#hasOlder = false;
    this.#lastOffset = reset.lastOffset;
    this.#epoch = reset.epoch;
    void this.#loadPageUpTo(reset, signal);
    void this.#refreshMembers(signal);
    return "end";
  }

  async #loadPageUpTo(reset: HistoryReset, signal: AbortSignal): Promise<void> {
    if (reset.lastOffset === 0n) return;
    this.#loadingOlder = true;
    try {
      const page = await this.#client.getHistory(
        {
          room: this.room,
          beforeOffset: reset.lastOffset + 1n,
          limit: HISTORY_PAGE,
          epoch: reset.epoch,
        },
        { signal },
      );
      this.#messages = [...page.messages, ...this.#messages];
      this.#hasOlder = page.hasMore;
    } catch (err) {
      if (!isOwnCancel(err, signal)) this.#olderError = formatCallError(err);
    } finally {
      this.#loadingOlder = false;
    }
  }

  // The first page is retried like the stream: the page may open while the server is down.
  async #loadNewestPage(signal: AbortSignal): Promise<{ lastOffset: bigint; epoch: string }> {
    const backoff = createBackoff(this.#backoff);
    for (;;) {
      try {
        const page = await this.#client.getHistory(
          { room: this.room, limit: HISTORY_PAGE },
          { signal },
        );
        this.#messages = page.messages;
        this.#hasOlder = page.hasMore;
        this.#lastOffset = page.lastOffset;
        this.#epoch = page.epoch;
        return { lastOffset: page.lastOffset, epoch: page.epoch };
      } catch (err) {
        if (signal.aborted) throw err;
        this.#status = "reconnecting";
        await delay(backoff.next(), signal);
      }
    }
  }

  async #refreshMembers(signal: AbortSignal): Promise<void> {
    try {
      const res = await this.#client.listMembers({ room: this.room }, { signal });
      this.#members = res.members.map((m) => ({
        user: m.user,
        joinedAt: toDate(m.joinedAt),
        connections: m.connections,
      }));
    } catch {
      // Shown by the connection's failure list; the list stays as it was, JOIN/LEAVE keep it live.
    }
  }

  #receive(message: Message): void {
    // The SYSTEM welcome (offset 0) is not part of the room's history.
    if (message.offset === 0n || message.offset <= this.#lastOffset) return;
    this.#lastOffset = message.offset;
    let next = [...this.#messages, message];
    if (next.length > MAX_FEED_MESSAGES) {
      next = next.slice(next.length - MAX_FEED_MESSAGES);
      this.#hasOlder = true;
    }
    this.#messages = next;
    if (message.type === MessageType.JOIN && !this.#members.some((m) => m.user === message.user)) {
      this.#members = [
        ...this.#members,
        { user: message.user, joinedAt: toDate(message.timestamp), connections: 1 },
      ];
    } else if (message.type === MessageType.LEAVE) {
      this.#members = this.#members.filter((m) => m.user !== message.user);
    }
  }
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
