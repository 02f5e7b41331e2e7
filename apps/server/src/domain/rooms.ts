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
import { QueueOverflowError } from "./bounded-queue.js";
import type { RoomHub } from "./room-hub.js";
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

/** A member of a room: a user with one or more open subscriptions. */
export interface MemberInfo {
  user: string;
  joinedAtMs: number;
  connections: number;
}

/** A subscriber fell behind; `resumeFrom` is the last offset it was sent. */
export class SlowSubscriberError extends Error {
  override name = "SlowSubscriberError";
  constructor(readonly resumeFrom: number) {
    super(`slow consumer; resume from offset ${resumeFrom}`);
  }
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

/**
 * The rooms domain: appends to each room's durable log, fans out what was stored to the room's
 * live subscribers, and keeps presence (JOIN and LEAVE). Knows nothing of RPCs or protocols;
 * errors are plain: ValidationError, SlowSubscriberError, StoreUnavailableError.
 */
export class Rooms {
  /** Messages stored and fanned out, since start (JOIN and LEAVE included). */
  published = 0;

  constructor(
    private readonly store: MessageStore,
    private readonly hub: RoomHub,
    private readonly options: MessageLimits & { subscriberQueueLimit: number },
  ) {}

  /**
   * Validates, stores durably, then fans out one message. Resolves once the message is durable.
   * A duplicate `clientMessageId` resolves to the original message and publishes nothing.
   *
   * @throws ValidationError naming the bad field; StoreUnavailableError.
   */
  async send(input: SendInput, origin?: object): Promise<AppendResult> {
    validateDraft(input, this.options);
    return this.append(
      input.room,
      input.user,
      input.content,
      MessageType.CHAT,
      input.clientMessageId,
      origin,
    );
  }

  private async append(
    room: string,
    user: string,
    content: string,
    type: MessageType,
    clientMessageId: string,
    origin?: object,
  ): Promise<AppendResult> {
    const [result] = await this.store.append([
      { id: randomUUID(), room, user, content, type, timestampMs: Date.now(), clientMessageId },
    ]);
    const appended = result as AppendResult;
    if (!appended.duplicate) {
      // Appends resolve in commit order, so rooms are published in offset order.
      this.published++;
      this.hub.publish(room, toMessage(appended.message), origin);
    }
    return appended;
  }

  /** A page of a room's history. See MessageStore.read. */
  history(
    room: string,
    query: { afterOffset?: number | undefined; beforeOffset?: number | undefined; limit: number },
  ): Promise<HistoryPage> {
    return this.store.read({ room, ...query });
  }

  /**
   * Registers a live subscriber and publishes JOIN when it is the user's first subscription to
   * the room. The returned subscriber buffers live messages from this moment; the caller drains
   * it with {@link Rooms.stream} and must call {@link Rooms.leave} when done.
   */
  async join(input: SubscribeInput): Promise<Subscriber> {
    const subscriber = new Subscriber(
      input.room,
      input.user,
      this.options.subscriberQueueLimit,
      input.origin,
    );
    const first = !this.hasConnection(input.room, input.user);
    this.hub.add(subscriber);
    if (first) {
      try {
        await this.append(
          input.room,
          input.user,
          `${input.user} joined`,
          MessageType.JOIN,
          "",
          input.origin,
        );
      } catch (err) {
        this.hub.remove(subscriber);
        throw err;
      }
    }
    return subscriber;
  }

  /**
   * Removes the subscriber at once, and publishes LEAVE when it was the user's last subscription
   * to the room. Resolves when LEAVE is stored; never rejects (a failed LEAVE is reported to
   * `onError`).
   */
  async leave(subscriber: Subscriber, onError: (err: unknown) => void): Promise<void> {
    subscriber.end();
    this.hub.remove(subscriber);
    if (this.hasConnection(subscriber.room, subscriber.user)) return;
    try {
      await this.append(
        subscriber.room,
        subscriber.user,
        `${subscriber.user} left`,
        MessageType.LEAVE,
        "",
      );
    } catch (err) {
      onError(err);
    }
  }

  /**
   * The messages a subscriber is owed, in offset order, with no gap and no duplicate: the stored
   * history after `sinceOffset` (when given), then the live messages queued since it joined.
   *
   * @throws SlowSubscriberError when the subscriber's queue overflowed.
   */
  async *stream(subscriber: Subscriber, sinceOffset: number | undefined): AsyncGenerator<Message> {
    // The last offset this stream has yielded; live messages at or below it were replayed.
    let last = 0;
    if (sinceOffset !== undefined) {
      last = sinceOffset;
      for (;;) {
        const page = await this.store.read({
          room: subscriber.room,
          afterOffset: last,
          limit: REPLAY_PAGE,
        });
        for (const m of page.messages) {
          last = m.offset;
          yield toMessage(m);
        }
        if (!page.hasMore) break;
      }
    }
    try {
      for await (const message of subscriber) {
        const offset = Number(message.offset);
        if (offset <= last) continue;
        last = offset;
        yield message;
      }
    } catch (err) {
      if (err instanceof QueueOverflowError) throw new SlowSubscriberError(last);
      throw err;
    }
  }

  /** Every room with its stored count, last offset and live subscriber count, by name. */
  async list(): Promise<
    Array<{ name: string; messageCount: number; lastOffset: number; subscribers: number }>
  > {
    const counts = this.hub.counts();
    return (await this.store.rooms()).map((r) => ({ ...r, subscribers: counts.get(r.name) ?? 0 }));
  }

  /** Who is subscribed to `room` now, one entry per user, oldest first. */
  members(room: string): MemberInfo[] {
    const byUser = new Map<string, MemberInfo>();
    for (const s of this.hub.subscribers(room)) {
      const member = byUser.get(s.user);
      if (member === undefined) {
        byUser.set(s.user, { user: s.user, joinedAtMs: s.joinedAtMs, connections: 1 });
      } else {
        member.connections++;
        member.joinedAtMs = Math.min(member.joinedAtMs, s.joinedAtMs);
      }
    }
    return [...byUser.values()].sort(
      (a, b) => a.joinedAtMs - b.joinedAtMs || (a.user < b.user ? -1 : 1),
    );
  }

  private hasConnection(room: string, user: string): boolean {
    return this.hub.connections(room, user) > 0;
  }
}
