import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import { type ChatService, type Message, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { type BackoffOptions, createBackoff } from "./backoff.js";
import {
  type AfterReset,
  type HistoryReset,
  resetFromRefusal,
  resumeOffsetAfter,
} from "./history-reset.js";

/**
 * Where a resumable subscription is: `connecting` once at the start, `live` each time a
 * connection delivers its first message, `reconnecting` after each retriable failure (before
 * the backoff delay), and `closed` once at the end.
 */
export type SubscriptionState = "connecting" | "live" | "reconnecting" | "closed";

/**
 * What came with a state change: the error that ended a connection, and the retry plan; the
 * room log's epoch and the server's welcome when `live`.
 */
export interface SubscriptionStateDetail {
  /** The epoch of the room log this connection delivers (`live`; "" when the server gives none). */
  epoch?: string;
  /**
   * The connection's welcome (`live`): the SYSTEM message SubscribeMessages sends first, not
   * stored (offset 0), e.g. "Welcome to room general, alice!". Given here, never yielded, so the
   * iteration holds stored messages only. Absent when a connection's first message is not one.
   */
  welcome?: Message;
  /** Why the last connection ended (`reconnecting`), or why the subscription ended (`closed`). */
  error?: ConnectError;
  /** Consecutive failed connections, 1 for the first retry (`reconnecting`). */
  attempt?: number;
  /** How long before the next connection, in ms (`reconnecting`). */
  delayMs?: number;
}

/** Which room to follow, as whom, and from where. */
export interface ResumableSubscriptionRequest {
  room: string;
  user: string;
  /**
   * Yield the room's stored messages with offset > sinceOffset first (0: the whole history).
   * Unset: only messages stored from now on, after the last `backlog` stored ones.
   */
  sinceOffset?: bigint;
  /**
   * The epoch `sinceOffset` was read in (a welcome's, a GetHistory answer's), checked by the
   * server: a log reset since is reported ({@link ResumableSubscriptionOptions.onHistoryReset})
   * instead of being served as if it continued. Unset: not checked.
   */
  epoch?: string;
  /**
   * Without `sinceOffset`: start this many stored messages back from the room's last offset
   * (read with GetHistory), so a consumer sees the newest messages before the live feed.
   * Default 0. Ignored when `sinceOffset` is set.
   */
  backlog?: number;
  /**
   * Follow without joining (SubscribeRequest.watch_only): no JOIN or LEAVE, not a member. Read
   * at every (re)connection, so a caller may change it and then {@link ResumableSubscriptionOptions.resubscribe}.
   */
  watchOnly?: boolean;
}

/** How a resumable subscription retries and reports. */
export interface ResumableSubscriptionOptions {
  /**
   * Aborting ends the iteration cleanly, as breaking out of the loop does: the `for await`
   * finishes without an error (whatever the abort's reason, e.g. `AbortSignal.timeout`), the
   * call is cancelled, nothing more is yielded, and the last state is `closed` without an error.
   * Unlike a connect-es stream, which throws ConnectError Canceled when its signal aborts: a
   * resumable subscription runs until its caller stops it, so that stop is not a failure.
   */
  signal?: AbortSignal;
  /**
   * A `resubscribe` event on it replaces the connection at once with a new one from the last
   * offset delivered (no gap, no duplicate, no backoff, no state change): how a caller applies
   * a changed request (`watchOnly` turned off: the user joins).
   */
  resubscribe?: EventTarget;
  /** Delays between reconnections; see {@link BackoffOptions} for the defaults. */
  backoff?: Partial<BackoffOptions>;
  /** Called on every state change, synchronously, before the iteration goes on. */
  onStateChange?: (state: SubscriptionState, detail?: SubscriptionStateDetail) => void;
  /**
   * Called, synchronously and before anything of the new log is yielded, when the room's log
   * was reset under the subscription ({@link HistoryReset}); returns what to do next
   * ({@link AfterReset}). Without it, a reset ends the iteration with the server's refusal.
   */
  onHistoryReset?: (reset: HistoryReset) => AfterReset;
}

/**
 * Follows a room with SubscribeMessages across disconnects and server restarts: every stored
 * message (offset > 0) is yielded exactly once, in offset order, and nothing else.
 *
 * It remembers the last offset it yielded and, when a connection ends in a way worth retrying,
 * subscribes again with `since_offset` = that offset after an exponential backoff with jitter,
 * dropping anything at or below it. Retried: Unavailable, Internal, Unknown (broken
 * connections), DeadlineExceeded and Aborted (from the server), ResourceExhausted (a slow
 * consumer, or a limit that may clear), Canceled not caused by `options.signal`, and a stream
 * that the server ends cleanly. The backoff starts again after a connection delivers a message.
 * Any other code (InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unimplemented, …)
 * ends the iteration with that ConnectError. Breaking out of the loop, or aborting
 * `options.signal`, ends it without an error and cancels the call.
 *
 * The server's SYSTEM welcome (offset 0, the first message of each connection) is not a stored
 * message and is not yielded: each connection's welcome comes with its `live` state change
 * ({@link SubscriptionStateDetail.welcome}). Without `sinceOffset`, the room's current last
 * offset is read first with GetHistory, so that a reconnection before the first live message
 * still loses nothing.
 *
 * Offsets are kept with the epoch of the room log they are in (each welcome names it; the
 * Centrifugo idea of a stream position `{offset, epoch}`), and a resume sends both. When the
 * log was reset (the server refuses the epoch with FailedPrecondition, or the position is beyond
 * the end of the log in the same epoch: OutOfRange), `options.onHistoryReset` is told and says
 * whether to follow the new log from its start or its end, or to stop; without it, the iteration
 * ends with the refusal. It never goes on as if the new log continued the old one.
 *
 * Browser-safe: it only uses the client it is given (connect-web or connect-node).
 */
export async function* subscribeResumable(
  client: Client<typeof ChatService>,
  request: ResumableSubscriptionRequest,
  options: ResumableSubscriptionOptions = {},
): AsyncGenerator<Message, void, undefined> {
  const { signal } = options;
  const notify = options.onStateChange ?? (() => {});
  const backoff = createBackoff(options.backoff);
  let lastOffset = request.sinceOffset;
  // The epoch lastOffset is in; "" while unknown (not sent, not checked).
  let epoch = request.sinceOffset === undefined ? "" : (request.epoch ?? "");
  let attempt = 0;
  let endError: ConnectError | undefined;

  notify("connecting");
  try {
    for (;;) {
      let failure: ConnectError;
      // Each connection has its own signal: leaving the `for await` below early (the consumer
      // broke out of its loop) does not cancel a connect-es call by itself, aborting it does.
      const connection = new AbortController();
      const cancel = () => connection.abort(signal?.reason);
      signal?.addEventListener("abort", cancel, { once: true });
      // Canceled, as the caller's own abort: a client's failure list does not count it.
      const replaced = new ConnectError("replaced by a new subscription", Code.Canceled);
      const replace = () => connection.abort(replaced);
      options.resubscribe?.addEventListener("resubscribe", replace, { once: true });
      const callOptions: CallOptions = { signal: connection.signal };
      try {
        if (signal?.aborted) return;
        if (lastOffset === undefined) {
          // Pin "from now on" to an offset, so that a retry can resume from it.
          const page = await client.getHistory({ room: request.room, limit: 1 }, callOptions);
          const backlog = BigInt(Math.max(0, Math.floor(request.backlog ?? 0)));
          lastOffset = page.lastOffset > backlog ? page.lastOffset - backlog : 0n;
          epoch = page.epoch;
        }
        const stream = client.subscribeMessages(
          {
            room: request.room,
            user: request.user,
            sinceOffset: lastOffset,
            epoch,
            watchOnly: request.watchOnly === true,
          },
          callOptions,
        );
        let delivered = false;
        for await (const message of stream) {
          // A message connect-es had buffered before the abort: the caller has stopped.
          if (signal?.aborted) return;
          if (!delivered) {
            delivered = true;
            attempt = 0;
            backoff.reset();
            const welcome =
              message.offset === 0n && message.type === MessageType.SYSTEM ? message : undefined;
            // The welcome names the log the stream delivers (the one asked for, when one was).
            if (welcome !== undefined && welcome.epoch !== "") epoch = welcome.epoch;
            notify("live", welcome === undefined ? { epoch } : { epoch, welcome });
          }
          // Not stored (SubscribeMessages' only such message is the welcome): not yielded.
          if (message.offset === 0n) continue;
          if (message.offset <= lastOffset) continue;
          lastOffset = message.offset;
          yield message;
        }
        failure = new ConnectError("the server ended the stream", Code.Unavailable);
      } catch (err) {
        if (signal?.aborted) return;
        // Replaced on request: the next connection at once, from the same offset.
        if (connection.signal.reason === replaced) continue;
        failure = ConnectError.from(err);
        const reset = resetFromRefusal(failure, request.room, epoch, lastOffset ?? 0n);
        if (reset !== undefined) {
          const action = options.onHistoryReset?.(reset) ?? "stop";
          if (action === "stop") throw failure;
          // Follow the new log: at once, as a new subscription (the backoff is for failures).
          lastOffset = resumeOffsetAfter(reset, action);
          epoch = reset.epoch;
          continue;
        }
        if (!isRetriable(failure)) throw failure;
      } finally {
        signal?.removeEventListener("abort", cancel);
        options.resubscribe?.removeEventListener("resubscribe", replace);
        connection.abort();
      }
      attempt++;
      const delayMs = backoff.next();
      notify("reconnecting", { error: failure, attempt, delayMs });
      if (!(await sleep(delayMs, signal))) return;
    }
  } catch (err) {
    // The caller aborted while a callback (onHistoryReset, onStateChange) ran: a clean end too.
    if (signal?.aborted) return;
    endError = ConnectError.from(err);
    throw endError;
  } finally {
    notify("closed", endError === undefined ? undefined : { error: endError });
  }
}

// Codes a broken connection, a restarting server or a slow consumer produce. Canceled reaches
// here only when the caller's signal was not aborted, so it was the server's or a proxy's.
const RETRIABLE = new Set<Code>([
  Code.Unavailable,
  Code.Internal,
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.ResourceExhausted,
  Code.Canceled,
]);

function isRetriable(error: ConnectError): boolean {
  return RETRIABLE.has(error.code);
}

// setTimeout that an abort cuts short (node:timers/promises is not available in browsers):
// true after `ms`, false at once when `signal` aborts.
function sleep(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve(false);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
