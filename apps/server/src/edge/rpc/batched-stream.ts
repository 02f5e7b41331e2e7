import type { notReady } from "../../domain/rooms.js";
import type { SelfReportingStream } from "./stream-observer.js";

export { notReady } from "../../domain/rooms.js";

/** Marks an object that keeps the {@link BatchedStream} contract (a structural test could be
 * fooled). */
export const batchedStream: unique symbol = Symbol("switchboard.batchedStream");

/**
 * The contract between the interceptors and the SubscribeMessages writer
 * (edge/rpc/subscribe-handler.ts): a response stream the writer reads in batches, one chunk of
 * envelopes per batch, and that reports its own progress to the interceptors that watch it.
 *
 * An interceptor that only watches a response stream must return it as it is
 * (edge/rpc/stream-observer.ts's `observeStream` does, by calling {@link
 * SelfReportingStream.observe}); one that wraps it in another iterable takes the stream off the
 * batched path: the writer then reads it one message at a time (correct, slower).
 * `batched-stream.test.ts` runs the server's own interceptor chain and checks that the stream
 * reaches the writer still batched.
 *
 * Shapes: `next()` resolves to the next batch of messages in order (never empty), or undefined
 * when the stream completed; it rejects with the stream's end (a ConnectError, e.g.
 * ResourceExhausted for a slow consumer, Unavailable at shutdown) once the stream is closed.
 * `close(reason)` ends it once, `reason` undefined for a completed stream, else its error
 * (Canceled "the client went away" when the consumer stopped early); observers hear of it.
 *
 * A writer that waits without a promise: `poll()` is `next()` without waiting (a batch ready
 * now, undefined when completed, or {@link notReady}); `onReady(ready)` then calls `ready` once,
 * synchronously, when `poll` has something new, and is true, or is false when the stream can
 * only be read on with `next()` for now (a subscription replaying history).
 */
export interface BatchedStream<T> extends SelfReportingStream<T> {
  readonly [batchedStream]: true;
  next(): Promise<T[] | undefined>;
  poll(): T[] | undefined | typeof notReady;
  onReady(ready: () => void): boolean;
  close(reason: unknown): void;
}

/** Whether `stream` keeps the {@link BatchedStream} contract (and was not wrapped). */
export function isBatchedStream<T>(stream: AsyncIterable<T>): stream is BatchedStream<T> {
  return (stream as Partial<BatchedStream<T>>)[batchedStream] === true;
}
