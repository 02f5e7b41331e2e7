import { Code, ConnectError } from "@connectrpc/connect";

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
 * rpc/subscribe-handler.ts).
 */
export interface SelfReportingStream<T> extends AsyncIterable<T> {
  observe(observer: StreamObserver): void;
}

/** The end an interceptor reports when the consumer stops reading before the stream ends. */
export function clientWentAway(): ConnectError {
  return new ConnectError("the client went away", Code.Canceled);
}

function reportsItself<T>(source: AsyncIterable<T>): source is SelfReportingStream<T> {
  return typeof (source as Partial<SelfReportingStream<T>>).observe === "function";
}

/**
 * Watches a response stream for an interceptor: a {@link SelfReportingStream} gets the observer
 * attached and is returned as it is; any other stream is wrapped in a plain iterator (no
 * generator) that reports each message, and the end on completion, error or `return()`.
 */
export function observeStream<T>(
  source: AsyncIterable<T>,
  observer: StreamObserver,
): AsyncIterable<T> {
  if (reportsItself(source)) {
    source.observe(observer);
    return source;
  }
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const it = source[Symbol.asyncIterator]();
      let ended = false;
      const end = (error: unknown) => {
        if (ended) return;
        ended = true;
        observer.onEnd(error);
      };
      return {
        async next() {
          let result: IteratorResult<T>;
          try {
            result = await it.next();
          } catch (err) {
            end(err);
            throw err;
          }
          if (result.done === true) end(undefined);
          else observer.onMessages?.(1);
          return result;
        },
        async return(value?: unknown) {
          end(clientWentAway());
          return it.return === undefined
            ? { done: true, value: value as T }
            : it.return(value as T);
        },
        async throw(err?: unknown) {
          end(err);
          if (it.throw === undefined) throw err;
          return it.throw(err);
        },
      };
    },
  };
}
