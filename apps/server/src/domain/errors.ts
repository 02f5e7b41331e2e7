/**
 * The domain's errors, one class per condition. The domain throws them plainly; the one mapper
 * at the edge (edge/rpc/errors.ts, toConnectError) gives each its Connect code. The store's own
 * error, StoreUnavailableError (Unavailable), is declared with the store's interface
 * (store/message-store.ts).
 */

import { SETTINGS } from "../settings.js";

/**
 * A field broke a rule; `field` is its name in the contract (snake_case). Connect code
 * InvalidArgument, with the message.
 */
export class ValidationError extends Error {
  override name = "ValidationError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }

  /** The same error, naming the request message it is about: "message N: …" (0-based). */
  inMessage(index: number): ValidationError {
    return new ValidationError(this.field, `message ${index}: ${this.message}`);
  }
}

/**
 * A client_message_id (idempotency key) reused in a room for a different message: another user
 * or other content than the message stored under it. A mistake, not a retry, so it is refused
 * rather than answered with the stored message (Stripe's idempotency keys: the same key with
 * other parameters is an error). Connect code AlreadyExists, with the message.
 */
export class IdempotencyKeyConflictError extends Error {
  override name = "IdempotencyKeyConflictError";
  constructor(
    readonly room: string,
    readonly clientMessageId: string,
    /** The message stored under the key: its offset and sender. */
    readonly stored: { offset: number; user: string },
  ) {
    super(
      `client_message_id ${JSON.stringify(clientMessageId)} was already used in room ${room} ` +
        `for a different message (#${stored.offset} by ${stored.user}); ` +
        "use a new key for a new message",
    );
  }
}

/**
 * A subscriber (a room subscription, a Chat session's replies, a StreamLogs reader) fell more
 * than its queue's `limit` behind: its queue ended and released what it held (BoundedQueue).
 * Reading a room, it carries `resumeFrom`, the last offset the subscriber was sent: history is
 * durable, so a client that resumes from it loses nothing. Connect code ResourceExhausted.
 */
export class SlowSubscriberError extends Error {
  override name = "SlowSubscriberError";
  constructor(
    readonly limit: number,
    readonly resumeFrom?: number,
  ) {
    super(
      resumeFrom === undefined
        ? `slow consumer: more than ${limit} items behind (${SETTINGS.subscriberQueueLimit.env})`
        : `slow consumer; resume from offset ${resumeFrom}`,
    );
  }

  /** The same condition, naming the offset to resume from. */
  resumingFrom(offset: number): SlowSubscriberError {
    return new SlowSubscriberError(this.limit, offset);
  }
}

/**
 * A room's change feed broke (the store became unreachable): its subscribers must resume, from
 * `resumeFrom` when it is known (the last offset the subscriber was sent). Connect code
 * Unavailable.
 */
export class FeedInterruptedError extends Error {
  override name = "FeedInterruptedError";
  constructor(
    /** Why the feed broke (the store's words). */
    readonly reason: string,
    readonly resumeFrom?: number,
  ) {
    super(
      resumeFrom === undefined
        ? `store unavailable (${reason})`
        : `store unavailable (${reason}); resume from offset ${resumeFrom}`,
    );
  }

  /** The same condition, naming the offset to resume from. */
  resumingFrom(offset: number): FeedInterruptedError {
    return new FeedInterruptedError(this.reason, offset);
  }
}

/** Where a room's log stands: its epoch and its first and last offsets (0 for none). */
export interface LogPosition {
  room: string;
  /** "" when the room has no log. */
  epoch: string;
  firstOffset: number;
  lastOffset: number;
}

/**
 * since_offset is beyond the room's last offset: the client's position is not in this history.
 * Carries where the log stands now (`position`). Connect code OutOfRange.
 */
export class OffsetOutOfRangeError extends Error {
  override name = "OffsetOutOfRangeError";
  constructor(
    sinceOffset: number,
    readonly position: LogPosition,
  ) {
    super(`since_offset ${sinceOffset} is beyond the room's last offset ${position.lastOffset}`);
  }
}

/**
 * The client's epoch is not the room's current one: the log it read from was reset (the store
 * lost its data, or its offsets went back and were reused), so its offsets name other messages
 * now. Carries the stale epoch and where the log stands now (`position`), so the client can start
 * again from the new log's first or last offset. Connect code FailedPrecondition (Centrifugo's
 * "unrecoverable position").
 */
export class HistoryResetError extends Error {
  override name = "HistoryResetError";
  constructor(
    /** The epoch the client had. */
    readonly staleEpoch: string,
    readonly position: LogPosition,
  ) {
    const { room, epoch, firstOffset, lastOffset } = position;
    super(
      `history of room ${room} was reset (epoch ${staleEpoch} is gone): ` +
        (epoch === ""
          ? "the room has no messages now"
          : firstOffset === 0
            ? `its log is now epoch ${epoch}, last offset ${lastOffset}`
            : `its log is now epoch ${epoch}, offsets ${firstOffset} to ${lastOffset}`),
    );
  }
}
