import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Message, MessageSchema, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import type {
  AppendResult,
  HistoryPage,
  MessageStore,
  StoredMessage,
} from "../store/message-store.js";
import type { MemberInfo, Presence } from "../store/presence.js";
import { QueueOverflowError } from "./bounded-queue.js";
import { FeedLostError, RoomHub } from "./room-hub.js";
import { Subscriber } from "./subscriber.js";
import { type MessageLimits, validateDraft } from "./validation.js";

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
}

/** A subscriber fell behind; `resumeFrom` is the last offset it was sent. */
export class SlowSubscriberError extends Error {
  override name = "SlowSubscriberError";
  constructor(readonly resumeFrom: number) {
    super(`slow consumer; resume from offset ${resumeFrom}`);
  }
}

/** The room's change feed broke; `resumeFrom` is the last offset the subscriber was sent. */
export class FeedInterruptedError extends Error {
  override name = "FeedInterruptedError";
  constructor(
    readonly resumeFrom: number,
    cause: string,
  ) {
    super(`store unavailable (${cause}); resume from offset ${resumeFrom}`);
  }
}

/** since_offset is beyond the room's last offset: the client's position is not in this history. */
export class OffsetOutOfRangeError extends Error {
  override name = "OffsetOutOfRangeError";
  constructor(sinceOffset: number, lastOffset: number) {
    super(`since_offset ${sinceOffset} is beyond the room's last offset ${lastOffset}`);
  }
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

/** Converts a stored message to the contract's Message, once per publish. */
export function toMessage(m: StoredMessage): Message {
  return create(MessageSchema, {
    id: m.id,
    user: m.user,
    content: m.content,
    room: m.room,
    timestamp: timestampFromMs(m.timestampMs),
    type: m.type,
    offset: BigInt(m.offset),
    clientMessageId: m.clientMessageId,
  });
}

/** How long a sent message's origin is remembered for its fan-out to skip, ms. */
const ORIGIN_TTL_MS = 30_000;

/**
 * The rooms domain: appends to each room's durable log, fans out what the store's change feed
 * announces to the room's live subscribers (RoomHub), and keeps presence (JOIN and LEAVE).
 * Knows nothing of RPCs or protocols; errors are plain: ValidationError, SlowSubscriberError,
 * FeedInterruptedError, OffsetOutOfRangeError, StoreUnavailableError.
 */
export class Rooms {
  /** Messages this process stored, since start (JOIN and LEAVE included). */
  published = 0;
  /** The fan-out of this process. */
  readonly hub: RoomHub;
  // Message id → the origin that sent it (a Chat session), so its fan-out skips that origin.
  private readonly origins = new Map<string, { origin: object; atMs: number }>();
  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly store: MessageStore,
    private readonly presence: Presence,
    private readonly options: MessageLimits & { subscriberQueueLimit: number },
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
  }

  /**
   * Validates and stores one message; resolves once it is durable. The store's change feed then
   * fans it out. A duplicate `clientMessageId` resolves to the original message.
   *
   * @throws ValidationError naming the bad field; StoreUnavailableError.
   */
  async send(input: SendInput, origin?: object, signal?: AbortSignal): Promise<AppendResult> {
    validateDraft(input, this.options);
    return this.append(
      input.room,
      input.user,
      input.content,
      MessageType.CHAT,
      input.clientMessageId,
      origin,
      signal,
    );
  }

  private async append(
    room: string,
    user: string,
    content: string,
    type: MessageType,
    clientMessageId: string,
    origin?: object,
    signal?: AbortSignal,
  ): Promise<AppendResult> {
    const id = randomUUID();
    if (origin !== undefined) this.origins.set(id, { origin, atMs: Date.now() });
    const [result] = await this.store.append(
      [{ id, room, user, content, type, timestampMs: Date.now(), clientMessageId }],
      signal,
    );
    const appended = result as AppendResult;
    if (appended.duplicate) this.origins.delete(id);
    else this.published++;
    return appended;
  }

  /** A page of a room's history. See MessageStore.read. */
  history(
    room: string,
    query: { afterOffset?: number | undefined; beforeOffset?: number | undefined; limit: number },
    signal?: AbortSignal,
  ): Promise<HistoryPage> {
    return this.store.read({ room, ...query }, signal);
  }

  /**
   * Registers a live subscriber, and publishes JOIN when it is the user's first subscription to
   * the room. The subscriber buffers live messages from the moment this resolves; the caller
   * drains it with {@link Rooms.stream} and must call {@link Rooms.leave} when done.
   *
   * @throws StoreUnavailableError when the room's feed or presence cannot be reached.
   */
  async join(input: SubscribeInput): Promise<Subscriber> {
    const subscriber = new Subscriber(
      input.room,
      input.user,
      this.options.subscriberQueueLimit,
      input.origin,
    );
    await this.hub.add(subscriber);
    let present = false;
    try {
      const first = await this.presence.join(input.room, input.user);
      present = true;
      if (first) {
        await this.append(
          input.room,
          input.user,
          `${input.user} joined`,
          MessageType.JOIN,
          "",
          input.origin,
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
   * Removes the subscriber at once, and publishes LEAVE when it was the user's last subscription
   * to the room. Runs once per subscriber (later calls only make sure it is out of the hub).
   * Never rejects: a failure is reported to `onError`.
   */
  async leave(subscriber: Subscriber, onError: (err: unknown) => void): Promise<void> {
    this.hub.remove(subscriber);
    if (subscriber.left) return;
    subscriber.left = true;
    subscriber.end();
    try {
      const last = await this.presence.leave(subscriber.room, subscriber.user);
      if (last) {
        await this.append(
          subscriber.room,
          subscriber.user,
          `${subscriber.user} left`,
          MessageType.LEAVE,
          "",
        );
      }
    } catch (err) {
      onError(err);
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

  /** A reader of what `subscriber` is owed, in batches: see {@link SubscriptionCursor}. */
  cursor(
    subscriber: Subscriber,
    sinceOffset: number | undefined,
    signal?: AbortSignal,
  ): SubscriptionCursor {
    return new SubscriptionCursor(this.store, subscriber, sinceOffset, signal);
  }

  /** Every room with its stored count, last offset and open subscriptions (all nodes), by name. */
  async list(): Promise<
    Array<{ name: string; messageCount: number; lastOffset: number; subscribers: number }>
  > {
    const [stats, counts] = await Promise.all([this.store.rooms(), this.presence.subscriptions()]);
    return stats.map((r) => ({ ...r, subscribers: counts.get(r.name) ?? 0 }));
  }

  /** Who is subscribed to `room` now (all nodes), one entry per user, oldest first. */
  members(room: string): Promise<MemberInfo[]> {
    return this.presence.members(room);
  }

  /** Stops background work. */
  close(): void {
    clearInterval(this.sweep);
  }
}

/** Messages in one live batch, at most: a writer's chunk stays a bounded size. */
const LIVE_BATCH = 256;

/**
 * Reads what one subscriber is owed, in batches, in offset order, with no gap and no duplicate:
 * the stored history after `sinceOffset` (when given) a page at a time, then the live messages
 * queued since it joined, as many as are waiting (at most 256). A live message at or below the
 * last replayed offset is skipped; SYSTEM notices (offset 0, never stored) always pass.
 *
 * Batches let a fan-out writer turn one wake-up into one write, however many messages queued up
 * meanwhile (the idea of Centrifugo's per-connection writer, which merges queued messages into
 * one frame).
 */
export class SubscriptionCursor {
  /** The last stored offset handed out; `sinceOffset` (or 0) before any. */
  last: number;
  private replaying: boolean;

  constructor(
    private readonly store: MessageStore,
    private readonly subscriber: Subscriber,
    private readonly sinceOffset: number | undefined,
    private readonly signal?: AbortSignal,
  ) {
    this.last = sinceOffset ?? 0;
    this.replaying = sinceOffset !== undefined;
  }

  /**
   * The next batch (never empty); undefined when the subscription ended cleanly.
   *
   * @throws OffsetOutOfRangeError when `sinceOffset` is beyond the room's last offset;
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
      if (first && (this.sinceOffset as number) > page.lastOffset) {
        throw new OffsetOutOfRangeError(this.sinceOffset as number, page.lastOffset);
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
      let queued: Message[] | undefined;
      try {
        queued = await this.subscriber.take(LIVE_BATCH);
      } catch (err) {
        if (err instanceof QueueOverflowError) throw new SlowSubscriberError(this.last);
        if (err instanceof FeedLostError) throw new FeedInterruptedError(this.last, err.message);
        throw err;
      }
      if (queued === undefined) return undefined;
      const batch = this.owed(queued);
      if (batch.length > 0) return batch;
    }
  }

  /** The queued messages not already replayed (offset 0 is never stored and always passes). */
  private owed(queued: Message[]): Message[] {
    let batch = queued;
    for (let i = 0; i < queued.length; i++) {
      const offset = Number((queued[i] as Message).offset);
      if (offset !== 0 && offset <= this.last) {
        // Rare: only right after a replay. Copy the rest, skipping what was replayed.
        if (batch === queued) batch = queued.slice(0, i);
        continue;
      }
      if (offset !== 0) this.last = offset;
      if (batch !== queued) batch.push(queued[i] as Message);
    }
    return batch;
  }
}
