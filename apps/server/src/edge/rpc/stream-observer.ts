import { eachMessage } from "../../policy/each-message.js";

/** The end an interceptor reports when the consumer stops reading before the stream ends. */
export { clientWentAway } from "../../policy/each-message.js";

/** Told about a response stream's progress: messages handed to the transport, and its end. */
export interface StreamObserver {
  /** `n` more messages were handed to the transport. */
  onMessages?(n: number): void;
  /**
   * The stream ended, once: `undefined` when it completed, else its error (a ConnectError with
   * Canceled "the client went away" when the consumer stopped reading before the end).
   */
  onEnd(error: unknown): void;
}

/**
 * A response stream that reports its own progress. Interceptors attach an observer to it instead
 * of wrapping it, so watching a stream costs nothing per message, and the stream stays the
 * object its producer made (the SubscribeMessages writer reads it in batches: see
 * edge/rpc/subscribe-handler.ts).
 */
export interface SelfReportingStream<T> extends AsyncIterable<T> {
  observe(observer: StreamObserver): void;
}

function reportsItself<T>(source: AsyncIterable<T>): source is SelfReportingStream<T> {
  return typeof (source as Partial<SelfReportingStream<T>>).observe === "function";
}

/**
 * Watches a response stream for an interceptor: a {@link SelfReportingStream} gets the observer
 * attached and is returned as it is; any other stream is wrapped by {@link eachMessage}, which
 * reports each message, and the end on completion, error or `return()` (Canceled, "the client
 * went away").
 */
export function observeStream<T>(
  source: AsyncIterable<T>,
  observer: StreamObserver,
): AsyncIterable<T> {
  if (reportsItself(source)) {
    source.observe(observer);
    return source;
  }
  return eachMessage(source, {
    each: (message) => {
      observer.onMessages?.(1);
      return message;
    },
    end: (error) => observer.onEnd(error),
  });
}
