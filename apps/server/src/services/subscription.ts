import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  type Message,
  MessageSchema,
  MessageType,
  type SubscribeRequest,
} from "@switchboard/proto/gen/chat/chat_pb";
import type { Logger } from "pino";
import { ValidationError } from "../domain/errors.js";
import { notReady, type Rooms, type SubscriptionCursor } from "../domain/rooms.js";
import type { Subscriber } from "../domain/subscriber.js";
import { type BatchedStream, batchedStream } from "../edge/rpc/batched-stream.js";
import { toConnectError } from "../edge/rpc/errors.js";
import { isShutdown, shutdownError } from "../edge/rpc/shutdown.js";
import { clientWentAway, type StreamObserver } from "../edge/rpc/stream-observer.js";
import type { Telemetry } from "../telemetry/telemetry.js";

/** What a subscription needs from the server. */
export interface SubscriptionDeps {
  rooms: Rooms;
  telemetry: Telemetry;
  logger: Logger;
}

/** Opens one SubscribeMessages call's subscription; see {@link RoomSubscription}. */
export type OpenSubscription = (
  req: SubscribeRequest,
  signal: AbortSignal,
) => Promise<RoomSubscription>;

/**
 * The subscriptions of SubscribeMessages: joins the room (presence, JOIN), reads the room log's
 * epoch, then hands out the seed's welcome (carrying the epoch), the replay after
 * `since_offset` and the live messages, all of that one log.
 *
 * @throws ConnectError InvalidArgument for a since_offset above 2^53; FailedPrecondition (a
 *   HistoryReset detail) when the request's epoch is not the room's current one; Unavailable
 *   when the room's feed or presence cannot be reached.
 */
export function createSubscriptions(deps: SubscriptionDeps): OpenSubscription {
  const onLeaveError = (err: unknown) => deps.logger.warn({ err }, "could not store LEAVE");
  return async (req, signal) => {
    // Errors here leave through the router's interceptors (edge/rpc/errors.ts maps them).
    const sinceOffset =
      req.sinceOffset === undefined ? undefined : offsetNumber(req.sinceOffset, "since_offset");
    const subscriber = await deps.rooms.join({
      room: req.room,
      user: req.user,
      watchOnly: req.watchOnly,
    });
    let epoch: string;
    try {
      // After joining: every live message queued from here on is checked against this epoch.
      epoch = await deps.rooms.currentEpoch(req.room, req.epoch, signal);
    } catch (err) {
      void deps.rooms.leave(subscriber, onLeaveError);
      throw err;
    }
    const closeStream = deps.telemetry.streamOpened("SubscribeMessages");
    return new RoomSubscription(
      deps.rooms.cursor(subscriber, sinceOffset, signal, epoch),
      welcome(req.room, req.user, epoch),
      () => {
        closeStream();
        void deps.rooms.leave(subscriber, onLeaveError);
      },
      subscriber,
      signal,
    );
  };
}

/**
 * One open SubscribeMessages stream: the welcome, then batches from the room's
 * SubscriptionCursor, every error mapped to its Connect code (edge/rpc/errors.ts; at shutdown,
 * Unavailable "server shutting down; resume from offset N", N the last offset handed out).
 *
 * Read it either in batches ({@link RoomSubscription.next}, the SubscribeMessages writer: it
 * keeps the {@link BatchedStream} contract) or one message at a time (as an AsyncIterable,
 * connect-es's own handlers). It reports to its observers itself: the access log and the limits
 * interceptors watch it without wrapping it. The call's abort signal (cancel, deadline,
 * shutdown) ends it.
 */
export class RoomSubscription implements BatchedStream<Message> {
  readonly [batchedStream] = true as const;
  private readonly observers: StreamObserver[] = [];
  private first: Message[] | undefined;
  private ended = false;
  private endedWith: unknown;

  constructor(
    private readonly cursor: SubscriptionCursor,
    welcome: Message,
    private readonly release: () => void,
    private readonly subscriber: Subscriber,
    private readonly signal: AbortSignal,
  ) {
    this.first = [welcome];
    // The call ended (client gone, deadline, shutdown): the subscriber's queue ends with the
    // abort reason, and the subscription ends now, not when the writer next asks for a batch. A
    // writer stuck in a write that never completes (a `drain` that never comes on an HTTP/2
    // stream destroyed meanwhile) would otherwise never ask again, and the subscriber would stay
    // in its room, in presence, and in its identity's stream count (MAX_STREAMS_PER_IDENTITY)
    // for good. The subscription is the listener itself (`handleEvent`: no closure per stream,
    // bench/README.md, memory per idle stream).
    if (signal.aborted) this.handleEvent();
    else signal.addEventListener("abort", this, { once: true });
  }

  /** The call's signal aborted: see the constructor. */
  handleEvent(): void {
    const reason = this.signal.reason;
    this.subscriber.end(toConnectError(reason));
    this.close(isShutdown(reason) ? shutdownError(this.cursor.last) : toConnectError(reason));
  }

  observe(observer: StreamObserver): void {
    if (this.ended) observer.onEnd(this.endedWith);
    else this.observers.push(observer);
  }

  /**
   * The next batch of messages, in order, never empty; undefined when the stream completed.
   * @throws ConnectError with the stream's end (the subscription is closed by then).
   */
  async next(): Promise<Message[] | undefined> {
    let batch = this.first;
    this.first = undefined;
    if (batch === undefined) {
      try {
        batch = await this.cursor.next();
      } catch (err) {
        throw this.failed(err);
      }
    }
    return this.handOut(batch);
  }

  /**
   * {@link next} without waiting: the next batch if one is ready now (never empty), undefined
   * when the stream completed, {@link notReady} when none is (then {@link onReady}).
   * @throws ConnectError with the stream's end (the subscription is closed by then).
   */
  poll(): Message[] | undefined | typeof notReady {
    let batch: Message[] | undefined | typeof notReady = this.first;
    this.first = undefined;
    if (batch === undefined) {
      try {
        batch = this.cursor.poll();
      } catch (err) {
        throw this.failed(err);
      }
      if (batch === notReady) return notReady;
    }
    return this.handOut(batch);
  }

  /**
   * Calls `ready` once when {@link poll} has something new, and is true; false while the
   * history is replayed (only {@link next} reads on then).
   */
  onReady(ready: () => void): boolean {
    if (this.first !== undefined) {
      ready();
      return true;
    }
    return this.cursor.onReady(ready);
  }

  /** The stream's end error for a cursor's error; the subscription is closed with it. */
  private failed(err: unknown): unknown {
    const error = isShutdown(err) ? shutdownError(this.cursor.last) : toConnectError(err);
    this.close(error);
    return error;
  }

  private handOut(batch: Message[] | undefined): Message[] | undefined {
    if (batch === undefined) {
      this.close(undefined);
      return undefined;
    }
    for (const observer of this.observers) observer.onMessages?.(batch.length);
    return batch;
  }

  /**
   * Ends the subscription once: leaves the room (LEAVE when it was the user's last) and tells
   * the observers. `reason` undefined is a completed stream, else its error.
   */
  close(reason: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.endedWith = reason;
    this.release();
    for (const observer of this.observers) observer.onEnd(reason);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    try {
      for (;;) {
        const batch = await this.next();
        if (batch === undefined) return;
        yield* batch;
      }
    } finally {
      // Only when the consumer stopped early; otherwise the subscription is closed already.
      if (!this.ended) this.close(clientWentAway());
    }
  }
}

/**
 * Offsets are uint64 on the wire and safe integers inside. The contract's rule (`uint64.lte`
 * 2^53 - 1 on every offset of a request) refuses a larger one before a handler runs; this guards
 * the conversion itself. @throws ValidationError above 2^53 - 1.
 */
export function offsetNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ValidationError(field, `${field} is larger than any offset`);
  }
  return Number(value);
}

/**
 * The seed's welcome: a SYSTEM message with id "system", not stored (offset 0), with the epoch of
 * the room log the stream delivers.
 */
function welcome(room: string, user: string, epoch: string): Message {
  return create(MessageSchema, {
    id: "system",
    user: "System",
    content: `Welcome to room ${room}, ${user}!`,
    room,
    timestamp: timestampNow(),
    type: MessageType.SYSTEM,
    epoch,
  });
}
