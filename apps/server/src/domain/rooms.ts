import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Message, MessageSchema, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import {
  type AppendResult,
  type HistoryPage,
  type MessageKind,
  type MessageStore,
  NotDurableError,
  type StoredMessage,
  StoreUnavailableError,
} from "../store/message-store.js";
import type { MemberInfo, Presence } from "../store/presence.js";
import {
  FeedInterruptedError,
  HistoryResetError,
  IdempotencyKeyConflictError,
  type LogPosition,
  OffsetOutOfRangeError,
  SlowSubscriberError,
} from "./errors.js";
import { RoomHub } from "./room-hub.js";
import { EPOCH, Subscriber, type TaggedMessage } from "./subscriber.js";
import { checkDraftLimits, type MessageLimits } from "./validation.js";

/** History pages read while replaying a subscription, in messages. */
const REPLAY_PAGE = 500;

/** What a client asks to store. */
export interface SendInput {
  room: string;
  user: string;
  content: string;
  /** Idempotency key; "" for none. */
  clientMessageId: string;
}

/** A room subscription request (SubscribeMessages, or a Chat session joining a room). */
export interface SubscribeInput {
  room: string;
  user: string;
  /** Replay history after this offset first; undefined for live messages only. */
  sinceOffset?: number | undefined;
  /** Sends from this origin are not delivered back to it (a Chat session's own messages). */
  origin?: object | undefined;
  /** Follow without joining: no presence, no JOIN or LEAVE (SubscribeRequest.watch_only). */
  watchOnly?: boolean | undefined;
}

/** A SYSTEM message (not stored, offset 0) saying that offsets `from`–`to` were trimmed. */
function trimmedNotice(room: string, from: number, to: number): Message {
  return create(MessageSchema, {
    id: "system",
    user: "System",
    content: `messages ${from}–${to} of room ${room} are no longer in history (trimmed)`,
    room,
    timestamp: timestampFromMs(Date.now()),
    type: MessageType.SYSTEM,
  });
}

/** The contract's type of each kind the store keeps (SYSTEM messages are never stored). */
const MESSAGE_TYPES: Readonly<Record<MessageKind, MessageType>> = {
  chat: MessageType.CHAT,
  join: MessageType.JOIN,
  leave: MessageType.LEAVE,
};

/** Converts a stored message to the contract's Message, once per publish. */
export function toMessage(m: StoredMessage): Message {
  return create(MessageSchema, {
    id: m.id,
    user: m.user,
    content: m.content,
    room: m.room,
    timestamp: timestampFromMs(m.timestampMs),
    type: MESSAGE_TYPES[m.kind],
    offset: BigInt(m.offset),
    clientMessageId: m.clientMessageId,
  });
}

/**
 * Where `room`'s log stands now: its epoch and its oldest and newest offsets (one history read).
 * @throws StoreUnavailableError; the signal's reason.
 */
async function logPosition(
  store: MessageStore,
  room: string,
  signal?: AbortSignal,
): Promise<LogPosition> {
  const page = await store.read({ room, afterOffset: 0, limit: 1 }, signal);
  return {
    room,
    epoch: page.epoch,
    firstOffset: page.messages[0]?.offset ?? 0,
    lastOffset: page.lastOffset,
  };
}

/** How long a sent message's origin is remembered for its fan-out to skip, ms. */
const ORIGIN_TTL_MS = 30_000;

/** Settings of {@link Rooms}. */
export type RoomsOptions = MessageLimits & {
  subscriberQueueLimit: number;
  /**
   * How long a member's LEAVE waits for them to subscribe again, ms (PRESENCE_GRACE_MS); 0
   * publishes LEAVE as soon as the last subscription ends. Default 0.
   */
  presenceGraceMs?: number | undefined;
};

/**
 * How often members whose LEAVE is owed but not scheduled here (left joined by a restarted or
 * killed process, or by a dead node) are looked for, ms: half the grace, within 250 ms – 5 s.
 */
function sweepInterval(graceMs: number): number {
  return graceMs === 0 ? 5_000 : Math.min(Math.max(graceMs / 2, 250), 5_000);
}

const memberKey = (room: string, user: string) => `${room}\u001f${user}`;

/**
 * The rooms domain: appends to each room's durable log, fans out what the store's change feed
 * announces to the room's live subscribers (RoomHub), and keeps presence (JOIN and LEAVE).
 *
 * Presence survives a reconnect: a user's LEAVE waits `presenceGraceMs` after their last
 * subscription to the room ends, and is not published if they subscribe again meanwhile (on this
 * node or, with Redis, any other); their JOIN is then not published either, since the stored
 * history still lists them as joined (MessageStore.joined). A graceful shutdown publishes no
 * LEAVE: the members it drops are owed a LEAVE only if they do not come back within the grace,
 * which whichever process runs next (SQLite) or any live node (Redis) accounts for, as it does
 * for the members of a process killed with `kill -9` or a node that died. The idea is Phoenix
 * Presence's and Slack's: a disconnect is not a departure until it has lasted a while.
 *
 * Every room log has an epoch (store/epoch.ts). A client names the epoch its offsets were read
 * in; a request whose epoch is not the room's current one is refused with HistoryResetError, and
 * a subscription whose room log is reset while it is open ends with it, so no client is ever
 * served another log as if it continued its own.
 *
 * Knows nothing of RPCs or protocols; errors are plain (domain/errors.ts): ValidationError,
 * SlowSubscriberError, FeedInterruptedError, OffsetOutOfRangeError, HistoryResetError, and the
 * store's StoreUnavailableError.
 */
export class Rooms {
  /** Messages this process stored, since start (JOIN and LEAVE included). */
  published = 0;
  /** The fan-out of this process. */
  readonly hub: RoomHub;
  /** The domain's counts, as the process's Counters read them (telemetry/telemetry.ts). */
  readonly counts = {
    published: () => this.published,
    delivered: () => this.hub.deliveries,
    slowConsumerDisconnects: () => this.hub.slowConsumerDisconnects,
    subscribers: () => this.hub.subscribers,
  };
  // Message id → the origin that sent it (a Chat session), so its fan-out skips that origin.
  private readonly origins = new Map<string, { origin: object; atMs: number }>();
  private readonly sweep: NodeJS.Timeout;
  // room␟user → the timer that publishes the member's LEAVE once the grace has passed.
  private readonly departures = new Map<string, NodeJS.Timeout>();
  private presenceSweep: NodeJS.Timeout | undefined;
  private readonly graceMs: number;
  private sweeping = false;
  private closed = false;

  constructor(
    private readonly store: MessageStore,
    private readonly presence: Presence,
    private readonly options: RoomsOptions,
    /** Reports failures of background work (a LEAVE that could not be stored). */
    private readonly onError: (err: unknown, context: string) => void = () => {},
  ) {
    this.hub = new RoomHub(
      store,
      toMessage,
      (id) => {
        const entry = this.origins.get(id);
        if (entry === undefined) return undefined;
        this.origins.delete(id);
        return entry.origin;
      },
      // A slow consumer leaves the room at once, not when its stalled stream finally ends:
      // its presence (ListMembers, LEAVE) must not depend on the client reading again.
      (subscriber) =>
        void this.leave(subscriber, (err) => this.onError(err, "LEAVE of a slow consumer")),
    );
    // An origin whose message never came back through the feed (a failed append) is forgotten.
    this.sweep = setInterval(() => {
      const cutoff = Date.now() - ORIGIN_TTL_MS;
      for (const [id, entry] of this.origins) if (entry.atMs < cutoff) this.origins.delete(id);
    }, ORIGIN_TTL_MS);
    this.sweep.unref();
    this.graceMs = options.presenceGraceMs ?? 0;
  }

  /**
   * Starts accounting for the members whose LEAVE is owed but not scheduled here (see
   * {@link Rooms.settleDepartures}). Call it once the server accepts connections: members a
   * previous process left joined are given the grace from then on, to come back.
   */
  startPresenceSweep(): void {
    if (this.presenceSweep !== undefined || this.closed) return;
    this.presenceSweep = setInterval(
      () => void this.settleDepartures(),
      sweepInterval(this.graceMs),
    );
    this.presenceSweep.unref();
    void this.settleDepartures();
  }

  /**
   * Stores one message; resolves once it is durable. The store's change feed then fans it out. A
   * duplicate `clientMessageId` resolves to the original message (`duplicate`). The request rules
   * of the schema (room pattern, required fields) were checked at the edge; this checks the limits
   * that are settings (domain/validation.ts).
   *
   * @throws ValidationError naming the field over its setting's limit; IdempotencyKeyConflictError when the key was
   *   already used in the room for a different message (another user or other content);
   *   StoreUnavailableError.
   */
  async send(input: SendInput, origin?: object, signal?: AbortSignal): Promise<AppendResult> {
    checkDraftLimits(input, this.options);
    return this.append(
      input.room,
      input.user,
      input.content,
      "chat",
      input.clientMessageId,
      origin,
      signal,
    );
  }

  private async append(
    room: string,
    user: string,
    content: string,
    kind: MessageKind,
    clientMessageId: string,
    origin?: object,
    signal?: AbortSignal,
  ): Promise<AppendResult> {
    const id = randomUUID();
    if (origin !== undefined) this.origins.set(id, { origin, atMs: Date.now() });
    const [result] = await this.store.append(
      [{ id, room, user, content, kind, timestampMs: Date.now(), clientMessageId }],
      signal,
    );
    const appended = result as AppendResult;
    if (appended.duplicate) this.origins.delete(id);
    else this.published++;
    // The store decides atomically which message owns a key (in its append transaction or
    // script, across every process and node sharing it) and returns that message, which never
    // changes: comparing with it here is the one place the rule lives, for every store.
    const stored = appended.message;
    if (
      appended.duplicate &&
      clientMessageId !== "" &&
      (stored.user !== user || stored.content !== content || stored.kind !== kind)
    ) {
      throw new IdempotencyKeyConflictError(room, clientMessageId, stored);
    }
    return appended;
  }

  /**
   * A page of a room's history. See MessageStore.read.
   * @param epoch the epoch the query's offsets were read in; "" for none (not checked).
   * @throws HistoryResetError when `epoch` is set and is not the room's current epoch;
   *   StoreUnavailableError.
   */
  async history(
    room: string,
    query: { afterOffset?: number | undefined; beforeOffset?: number | undefined; limit: number },
    signal?: AbortSignal,
    epoch = "",
  ): Promise<HistoryPage> {
    const page = await this.store.read({ room, ...query }, signal);
    if (epoch !== "" && page.epoch !== epoch) {
      throw new HistoryResetError(epoch, await logPosition(this.store, room, signal));
    }
    return page;
  }

  /**
   * The epoch of `room`'s log now ("" when it has none), for a subscription to give in its
   * welcome. Read after {@link Rooms.join}: every live message the subscriber queues from then
   * on is checked against it by its cursor.
   *
   * @param expected the epoch the client holds; "" for none (not checked).
   * @throws HistoryResetError when `expected` is set and is not the room's current epoch;
   *   StoreUnavailableError.
   */
  async currentEpoch(room: string, expected: string, signal?: AbortSignal): Promise<string> {
    const page = await this.store.read({ room, limit: 0 }, signal);
    if (expected !== "" && page.epoch !== expected) {
      throw new HistoryResetError(expected, await logPosition(this.store, room, signal));
    }
    return page.epoch;
  }

  /**
   * Registers a live subscriber, and publishes JOIN when it is the user's first subscription to
   * the room (not when they come back within the presence grace: the store skips that JOIN). A
   * `watchOnly` subscriber is registered only: no presence, no JOIN, and no LEAVE at its end.
   * The subscriber buffers live messages from the moment this resolves; the caller drains it
   * with {@link Rooms.stream} and must call {@link Rooms.leave} when done. A JOIN the store
   * cannot make durable (NotDurableError) does not fail it: see presenceMessage.
   *
   * @throws StoreUnavailableError when the room's feed or presence cannot be reached.
   */
  async join(input: SubscribeInput): Promise<Subscriber> {
    // Back within the grace: no LEAVE (and the store skips the JOIN: the user is still joined).
    this.cancelDeparture(input.room, input.user);
    const subscriber = new Subscriber(
      input.room,
      input.user,
      this.options.subscriberQueueLimit,
      input.origin,
    );
    await this.hub.add(subscriber);
    if (input.watchOnly === true) {
      subscriber.watchOnly = true;
      return subscriber;
    }
    let present = false;
    try {
      const first = await this.presence.join(input.room, input.user);
      present = true;
      if (first) {
        await this.presenceMessage(
          this.append(input.room, input.user, `${input.user} joined`, "join", "", input.origin),
          `JOIN in room ${input.room}`,
        );
      }
    } catch (err) {
      this.hub.remove(subscriber);
      // A JOIN that could not be stored must not leave the user counted as present.
      if (present) await this.presence.leave(input.room, input.user).catch(() => {});
      throw err;
    }
    return subscriber;
  }

  /**
   * Removes the subscriber at once. When it was the user's last subscription to the room, LEAVE
   * is published `presenceGraceMs` later unless the user subscribes again meanwhile (at once
   * with a grace of 0). Runs once per subscriber (later calls only make sure it is out of the
   * hub). Never rejects: a failure is reported to `onError`.
   */
  async leave(subscriber: Subscriber, onError: (err: unknown) => void): Promise<void> {
    this.hub.remove(subscriber);
    if (subscriber.left) return;
    subscriber.left = true;
    subscriber.end();
    // Never counted in presence: its end owes no LEAVE.
    if (subscriber.watchOnly) return;
    try {
      const last = await this.presence.leave(subscriber.room, subscriber.user);
      if (!last) return;
      if (this.graceMs === 0) await this.depart(subscriber.room, subscriber.user);
      else this.scheduleDeparture(subscriber.room, subscriber.user);
    } catch (err) {
      onError(err);
    }
  }

  /**
   * Publishes LEAVE; the store skips it when the user is not (or no longer) joined. Where the
   * presence is shared by processes the store cannot check (SQLite with WORKERS=N), only under
   * its claim: not while the user is subscribed on any of them, nor before the grace has passed
   * since their last subscription ended, wherever it was.
   */
  private async depart(room: string, user: string): Promise<void> {
    const leave = () =>
      this.presenceMessage(
        this.append(room, user, `${user} left`, "leave", ""),
        `LEAVE in room ${room}`,
      );
    if (this.presence.claimDeparture === undefined) {
      await leave();
      return;
    }
    const release = await this.presence.claimDeparture(room, user, this.graceMs);
    if (release === undefined) return;
    try {
      await leave();
    } finally {
      release();
    }
  }

  /**
   * Awaits a JOIN or LEAVE append. These are side effects of subscribing, not sends a caller
   * asked for and could retry, so one the store could not make durable (NotDurableError: a Redis
   * replica wait that failed or was refused) is reported to `onError` (a warning) and does not
   * fail the subscription. The store has then either not written it (the log has no JOIN for
   * the subscription, and so no LEAVE after it; a LEAVE is tried again by the presence sweep),
   * or written it unacknowledged: it is in the room's history, and subscribers get it in its
   * place once a later message of the room is acknowledged. Every other error is rethrown.
   */
  private async presenceMessage(append: Promise<unknown>, what: string): Promise<void> {
    try {
      await append;
    } catch (err) {
      if (!(err instanceof NotDurableError)) throw err;
      this.onError(
        err,
        `${what} ${err.mayBeStored ? "stored but not acknowledged" : "not stored"}; the subscription goes on`,
      );
    }
  }

  private scheduleDeparture(room: string, user: string): void {
    if (this.closed) return;
    this.cancelDeparture(room, user);
    const key = memberKey(room, user);
    const timer = setTimeout(() => {
      this.departures.delete(key);
      this.depart(room, user).catch((err: unknown) => this.onError(err, "LEAVE after the grace"));
    }, this.graceMs);
    timer.unref();
    this.departures.set(key, timer);
  }

  private cancelDeparture(room: string, user: string): void {
    const key = memberKey(room, user);
    const timer = this.departures.get(key);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.departures.delete(key);
  }

  /**
   * Publishes the LEAVEs owed and not scheduled here: members left joined by a previous process
   * (a restart or `kill -9`) or by a dead node, once they have been away for the grace. Safe on
   * every node at once: the store stores each LEAVE once.
   */
  async settleDepartures(): Promise<void> {
    if (this.sweeping || this.closed) return;
    this.sweeping = true;
    try {
      for (const { room, user } of await this.presence.due(this.graceMs)) {
        if (this.closed) return;
        if (this.departures.has(memberKey(room, user))) continue;
        await this.depart(room, user);
      }
    } catch (err) {
      // While the store is unreachable the next sweep tries again; the client reports outages.
      if (!(err instanceof StoreUnavailableError)) this.onError(err, "presence sweep");
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * The messages a subscriber is owed, in offset order, with no gap and no duplicate: the stored
   * history after `sinceOffset` (when given), then the live messages queued since it joined.
   * One message at a time; {@link Rooms.cursor} gives the same sequence in batches.
   *
   * @throws as {@link SubscriptionCursor.next}.
   */
  async *stream(
    subscriber: Subscriber,
    sinceOffset: number | undefined,
    signal?: AbortSignal,
  ): AsyncGenerator<Message> {
    const cursor = this.cursor(subscriber, sinceOffset, signal);
    for (;;) {
      const batch = await cursor.next();
      if (batch === undefined) return;
      yield* batch;
    }
  }

  /**
   * A reader of what `subscriber` is owed, in batches: see {@link SubscriptionCursor}.
   * @param epoch the stream's epoch ({@link Rooms.currentEpoch}); undefined follows the room's
   *   log through resets (Chat, which cannot resume).
   */
  cursor(
    subscriber: Subscriber,
    sinceOffset: number | undefined,
    signal?: AbortSignal,
    epoch?: string,
  ): SubscriptionCursor {
    return new SubscriptionCursor(this.store, subscriber, sinceOffset, signal, epoch);
  }

  /** Every room with its stored count, last offset and open subscriptions (all nodes), by name. */
  async list(): Promise<
    Array<{
      name: string;
      messageCount: number;
      lastOffset: number;
      epoch: string;
      subscribers: number;
    }>
  > {
    const [stats, counts] = await Promise.all([this.store.rooms(), this.presence.subscriptions()]);
    return stats.map((r) => ({ ...r, subscribers: counts.get(r.name) ?? 0 }));
  }

  /**
   * Who is in `room` now (all nodes), one entry per user, oldest first: the users subscribed,
   * and those away within the presence grace (0 connections).
   */
  members(room: string): Promise<MemberInfo[]> {
    return this.presence.members(room);
  }

  /**
   * Stops background work; call it when shutdown begins. LEAVEs within their grace, and those of
   * subscriptions that end from now on, are not published: a member dropped by a restart is owed
   * a LEAVE only if they do not come back (see the class comment). Idempotent.
   */
  close(): void {
    this.closed = true;
    clearInterval(this.sweep);
    clearInterval(this.presenceSweep);
    for (const timer of this.departures.values()) clearTimeout(timer);
    this.departures.clear();
  }
}

/** What {@link SubscriptionCursor.poll} returns when no batch is ready yet. */
export const notReady: unique symbol = Symbol("switchboard.notReady");

/** Messages in one live batch, at most: a writer's chunk stays a bounded size. */
const LIVE_BATCH = 256;

/**
 * Reads what one subscriber is owed, in batches, in offset order, with no gap and no duplicate:
 * the stored history after `sinceOffset` (when given) a page at a time, then the live messages
 * queued since it joined, as many as are waiting (at most 256). A live message at or below the
 * last replayed offset is skipped; SYSTEM notices (offset 0, never stored) always pass.
 *
 * Every stored message it hands out is of one room log: the stream's `epoch` (the welcome's). A
 * replay page or a live message of another epoch (the log was reset: FLUSHALL, offsets rolled
 * back) ends it with HistoryResetError after the messages before it, rather than handing out
 * another log's offsets as if they continued this one. An `epoch` of "" (the room had no log)
 * takes the first log's. Without an `epoch` (Chat, which cannot resume), it follows the room's
 * log through a reset instead: offsets start again with the new epoch.
 *
 * Batches let a fan-out writer turn one wake-up into one write, however many messages queued up
 * meanwhile (the idea of Centrifugo's per-connection writer, which merges queued messages into
 * one frame).
 */
export class SubscriptionCursor {
  /** The last stored offset handed out; `sinceOffset` (or 0) before any. */
  last: number;
  private replaying: boolean;
  /** The epoch of the messages handed out ("" until known). */
  private epoch: string;
  /** Whether a new epoch ends the cursor (true) or is followed (false). */
  private readonly strict: boolean;
  /** Set once the log was found reset: settles when the error to end with is known. */
  private ending: Promise<void> | undefined;
  private ended: { error: unknown } | undefined;

  constructor(
    private readonly store: MessageStore,
    private readonly subscriber: Subscriber,
    private readonly sinceOffset: number | undefined,
    private readonly signal?: AbortSignal,
    epoch?: string,
  ) {
    this.last = sinceOffset ?? 0;
    this.replaying = sinceOffset !== undefined;
    this.epoch = epoch ?? "";
    this.strict = epoch !== undefined;
  }

  /**
   * The next batch (never empty); undefined when the subscription ended cleanly.
   *
   * @throws OffsetOutOfRangeError when `sinceOffset` is beyond the room's last offset;
   *   HistoryResetError when the room's log is not (or no longer) the stream's epoch;
   *   SlowSubscriberError when the subscriber's queue overflowed; FeedInterruptedError when the
   *   store's feed broke (both carry the offset to resume from); the queue's own end error
   *   (cancel, deadline, shutdown); StoreUnavailableError while replaying.
   */
  async next(): Promise<Message[] | undefined> {
    const { room } = this.subscriber;
    while (this.replaying) {
      const first = this.last === this.sinceOffset;
      const page = await this.store.read(
        { room, afterOffset: this.last, limit: REPLAY_PAGE },
        this.signal,
      );
      if (!this.sameLog(page.epoch)) throw await this.resetError();
      if (first && (this.sinceOffset as number) > page.lastOffset) {
        throw new OffsetOutOfRangeError(
          this.sinceOffset as number,
          await logPosition(this.store, room, this.signal),
        );
      }
      const batch: Message[] = [];
      for (const m of page.messages) {
        // History trimmed by length or age (Redis) no longer holds what the subscriber asked
        // for: say so, instead of skipping it silently.
        if (m.offset > this.last + 1) batch.push(trimmedNotice(room, this.last + 1, m.offset - 1));
        this.last = m.offset;
        batch.push(toMessage(m));
      }
      if (!page.hasMore) this.replaying = false;
      if (batch.length > 0) return batch;
    }
    for (;;) {
      const batch = this.poll();
      if (batch !== notReady) return batch;
      await new Promise<void>((resolve) => this.onReady(resolve));
    }
  }

  /**
   * {@link next} without waiting, once the replay is over: the next batch of live messages
   * (never empty), undefined when the subscription ended cleanly, or {@link notReady} when none
   * is queued yet, or while replaying (then {@link onReady} says when to poll again, or, while
   * replaying, `next` must be used).
   *
   * @throws as {@link next}.
   */
  poll(): Message[] | undefined | typeof notReady {
    if (this.replaying) return notReady;
    if (this.ending !== undefined) {
      if (this.ended !== undefined) throw this.ended.error;
      return notReady;
    }
    for (;;) {
      let queued: Message[] | null | undefined;
      try {
        queued = this.subscriber.poll(LIVE_BATCH);
      } catch (err) {
        // The subscriber's queue knows the condition; the cursor, the offset to resume from.
        if (err instanceof SlowSubscriberError || err instanceof FeedInterruptedError) {
          throw err.resumingFrom(this.last);
        }
        throw err;
      }
      if (queued === undefined) return notReady;
      if (queued === null) return undefined;
      const batch = this.owed(queued);
      if (batch.length > 0) return batch;
      if (this.ending !== undefined) return notReady;
    }
  }

  /**
   * Calls `ready` once when {@link poll} has something new (a live message, the end), and is
   * true; false while replaying, when only {@link next} reads on.
   */
  onReady(ready: () => void): boolean {
    if (this.replaying) return false;
    if (this.ending !== undefined) void this.ending.then(ready);
    else this.subscriber.onReady(ready);
    return true;
  }

  /**
   * Whether a page or message of `epoch` belongs to the log handed out so far; takes the first
   * log's epoch (and, when following, a new log's, whose offsets start again).
   */
  private sameLog(epoch: string): boolean {
    if (epoch === this.epoch) return true;
    if (this.epoch !== "" && this.strict) return false;
    if (this.epoch !== "") this.last = 0;
    this.epoch = epoch;
    return true;
  }

  /** The error a reset log ends the cursor with: where the room's log stands now. */
  private async resetError(): Promise<HistoryResetError> {
    const position = await logPosition(this.store, this.subscriber.room, this.signal);
    return new HistoryResetError(this.epoch, position);
  }

  /**
   * The queued messages not already replayed (offset 0 is never stored and always passes), up
   * to the first of another log when the cursor does not follow resets: the cursor then ends.
   */
  private owed(queued: Message[]): Message[] {
    let batch = queued;
    for (let i = 0; i < queued.length; i++) {
      const message = queued[i] as TaggedMessage;
      const offset = Number(message.offset);
      if (offset !== 0) {
        const epoch = message[EPOCH];
        if (epoch !== undefined && epoch !== this.epoch && !this.sameLog(epoch)) {
          // The log was reset: hand out what came before, then end with where it stands now.
          this.ending = this.resetError().then(
            (error) => {
              this.ended = { error };
            },
            (error: unknown) => {
              this.ended = { error };
            },
          );
          return batch === queued ? queued.slice(0, i) : batch;
        }
      }
      if (offset !== 0 && offset <= this.last) {
        // Rare: only right after a replay. Copy the rest, skipping what was replayed.
        if (batch === queued) batch = queued.slice(0, i);
        continue;
      }
      if (offset !== 0) this.last = offset;
      if (batch !== queued) batch.push(message);
    }
    return batch;
  }
}
