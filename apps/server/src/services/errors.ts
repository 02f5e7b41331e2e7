import { Code, ConnectError } from "@connectrpc/connect";
import { QueueOverflowError } from "../domain/bounded-queue.js";
import {
  FeedInterruptedError,
  OffsetOutOfRangeError,
  SlowSubscriberError,
} from "../domain/rooms.js";
import { ValidationError } from "../domain/validation.js";
import { StoreUnavailableError } from "../store/message-store.js";

/**
 * Maps the domain's plain errors to Connect codes at the edge: ValidationError →
 * InvalidArgument, SlowSubscriberError and QueueOverflowError → ResourceExhausted,
 * StoreUnavailableError and FeedInterruptedError → Unavailable, OffsetOutOfRangeError →
 * OutOfRange; a ConnectError passes through; anything else is Internal.
 */
export function toConnectError(err: unknown, prefix = ""): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof ValidationError)
    return new ConnectError(prefix + err.message, Code.InvalidArgument);
  if (err instanceof SlowSubscriberError)
    return new ConnectError(err.message, Code.ResourceExhausted);
  if (err instanceof QueueOverflowError) {
    return new ConnectError(`slow consumer: ${err.message}`, Code.ResourceExhausted);
  }
  if (err instanceof StoreUnavailableError || err instanceof FeedInterruptedError) {
    return new ConnectError(err.message, Code.Unavailable);
  }
  if (err instanceof OffsetOutOfRangeError) return new ConnectError(err.message, Code.OutOfRange);
  return ConnectError.from(err, Code.Internal);
}
