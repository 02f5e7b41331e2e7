import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { HistoryResetSchema } from "@switchboard/proto/gen/chat/chat_pb";
import {
  FeedInterruptedError,
  HistoryResetError,
  IdempotencyKeyConflictError,
  type LogPosition,
  OffsetOutOfRangeError,
  SlowSubscriberError,
  ValidationError,
} from "../../domain/errors.js";
import { SETTINGS } from "../../settings.js";
import { StoreUnavailableError } from "../../store/message-store.js";

/** The message a caller sees for an error the server did not expect (connect-es's wording). */
export const INTERNAL_MESSAGE = "internal error";

/**
 * The one error mapper of every RPC: what a caller sees for an error, as a ConnectError.
 *
 * - ConnectError: as it is (the interceptors', connect-es's, or one already mapped here), but for
 *   connect-es's refusals that name its own options, reworded to name the setting a user sets
 *   ({@link inSettingsTerms}).
 * - ValidationError → InvalidArgument, with `prefix` ("message N: " in a stream).
 * - SlowSubscriberError (a subscriber, a Chat session or a StreamLogs reader fell behind)
 *   → ResourceExhausted.
 * - StoreUnavailableError and FeedInterruptedError → Unavailable.
 * - IdempotencyKeyConflictError (a client_message_id reused for a different message)
 *   → AlreadyExists.
 * - HistoryResetError → FailedPrecondition, OffsetOutOfRangeError → OutOfRange, each with a
 *   chat.HistoryReset detail: where the room's log stands now (epoch, first and last offsets),
 *   which connect-es writes into the Connect error's `details` and gRPC's
 *   `grpc-status-details-bin` trailer.
 * - An AbortError or TimeoutError (an aborted signal's reason) → Canceled, as connect-es's
 *   ConnectError.from has it.
 * - Anything else → Internal "internal error", with the error as the ConnectError's `cause`:
 *   its own text (a SQLite or Redis message, a stack) never reaches the caller; the access log
 *   writes it with the request's id (edge/rpc/observe.ts). This is connect-es's own rule for an
 * error   a handler throws (protocol-connect/handler-factory.js: `new ConnectError("internal
 * error",   Code.Internal, undefined, undefined, e)`).
 */
export function toConnectError(err: unknown, prefix = ""): ConnectError {
  if (err instanceof ConnectError) return inSettingsTerms(err);
  if (err instanceof ValidationError)
    return new ConnectError(prefix + err.message, Code.InvalidArgument);
  if (err instanceof SlowSubscriberError)
    return new ConnectError(err.message, Code.ResourceExhausted);
  if (err instanceof IdempotencyKeyConflictError)
    return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof StoreUnavailableError || err instanceof FeedInterruptedError) {
    return new ConnectError(err.message, Code.Unavailable);
  }
  if (err instanceof HistoryResetError) {
    return new ConnectError(err.message, Code.FailedPrecondition, undefined, [
      historyReset(err.position),
    ]);
  }
  if (err instanceof OffsetOutOfRangeError) {
    return new ConnectError(err.message, Code.OutOfRange, undefined, [historyReset(err.position)]);
  }
  if (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError")) {
    return new ConnectError(err.message, Code.Canceled);
  }
  return new ConnectError(INTERNAL_MESSAGE, Code.Internal, undefined, undefined, err);
}

/**
 * connect-es's refusals name its router options (`readMaxBytes`, `maxTimeoutMs`), which a user
 * never sees; each is reworded to name the setting that sets it, as the server's own refusals do
 * ("request body of N bytes is over READ_MAX_BYTES (65536)"). Same code, details and cause; any
 * other error is returned as it is.
 */
export function inSettingsTerms(error: ConnectError): ConnectError {
  const message = reworded(error.rawMessage);
  if (message === undefined) return error;
  const mapped = new ConnectError(message, error.code, error.metadata, undefined, error.cause);
  mapped.details.push(...error.details);
  return mapped;
}

/**
 * connect-es 2.x's words (connect's protocol/limit-io.js and parse-timeout.js, connect-node's
 * compression.js).
 */
function reworded(message: string): string | undefined {
  const size =
    /^message (?:size (?:(\d+) )?)?is larger than configured readMaxBytes (\d+)( after decompression)?$/.exec(
      message,
    );
  if (size !== null) {
    const what = `the request message${size[3] === undefined ? "" : " (decompressed)"} is`;
    const bytes = size[1] === undefined ? "" : ` ${size[1]} bytes,`;
    return `${what}${bytes} over ${SETTINGS.readMaxBytes.env} (${size[2]})`;
  }
  const timeout = /^timeout (\d+)ms must be <= (\d+)$/.exec(message);
  if (timeout !== null) {
    return `the call's timeout of ${timeout[1]} ms is over ${SETTINGS.maxTimeoutMs.env} (${timeout[2]} ms)`;
  }
  return undefined;
}

/** A log's position as the contract's HistoryReset error detail. */
function historyReset(position: LogPosition) {
  return {
    desc: HistoryResetSchema,
    value: {
      room: position.room,
      epoch: position.epoch,
      firstOffset: BigInt(position.firstOffset),
      lastOffset: BigInt(position.lastOffset),
    },
  };
}

/**
 * The error mapper at the edge, as the innermost interceptor: whatever an implementation throws,
 * when it is called or while its response stream is read, leaves as {@link toConnectError} maps
 * it, so every RPC (connect-es's handlers and Switchboard's own, every protocol) answers the
 * same code and message for the same error, and the interceptors outside it (the access log,
 * metrics) see the code the caller gets. A response stream that maps its own errors
 * (services/subscription.ts's RoomSubscription, read in batches) is left as it is.
 */
export function createErrorInterceptor(): Interceptor {
  return (next) => async (req) => {
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      throw toConnectError(err);
    }
    if (!res.stream || mapsItsOwnErrors(res.message)) return res;
    return { ...res, message: mapped(res.message) };
  };
}

/** A stream that reports itself (edge/rpc/stream-observer.ts) maps its errors with toConnectError.
 * */
function mapsItsOwnErrors(stream: AsyncIterable<unknown>): boolean {
  return typeof (stream as { observe?: unknown }).observe === "function";
}

/** `source` with every error it throws mapped; a plain iterator, no generator. */
function mapped<T>(source: AsyncIterable<T>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const it = source[Symbol.asyncIterator]();
      return {
        async next() {
          try {
            return await it.next();
          } catch (err) {
            throw toConnectError(err);
          }
        },
        async return(value?: unknown) {
          return it.return === undefined
            ? { done: true, value: value as T }
            : it.return(value as T);
        },
        async throw(err?: unknown) {
          if (it.throw === undefined) throw err;
          return it.throw(err);
        },
      };
    },
  };
}
