/**
 * The domain's errors, one class per condition. The domain throws them plainly; the one mapper
 * at the edge (services/errors.ts, toConnectError) gives each its Connect code. The store's own
 * error, StoreUnavailableError (Unavailable), is declared with the store's interface
 * (store/message-store.ts).
 */

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
        ? `slow consumer: more than ${limit} items behind`
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

/**
 * since_offset is beyond the room's last offset: the client's position is not in this history.
 * Connect code OutOfRange.
 */
export class OffsetOutOfRangeError extends Error {
  override name = "OffsetOutOfRangeError";
  constructor(sinceOffset: number, lastOffset: number) {
    super(`since_offset ${sinceOffset} is beyond the room's last offset ${lastOffset}`);
  }
}
