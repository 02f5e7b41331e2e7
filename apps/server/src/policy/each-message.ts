import { Code, ConnectError } from "@connectrpc/connect";

/** Returned by {@link MessageTap.each} to pass nothing on for that message. */
export const SKIP: unique symbol = Symbol("skip");

/** What an interceptor does with a stream: with each message, with the source's error, at the end. */
export interface MessageTap<T, U = T> {
  /**
   * Called with each message and its index (from 0, counting every message of the source), in
   * order, when the consumer pulls it: returns what to pass on (the same message, or another), or
   * {@link SKIP} to pass nothing and read on, or a promise of either (awaited before the next
   * message is read: a check that asks a shared counter). Throwing (or rejecting) ends the stream
   * with that error: the source is closed first (its `return()`), as a `for await` loop closes it.
   */
  each?(message: T, index: number): U | typeof SKIP | Promise<U | typeof SKIP>;
  /** The error the consumer gets when the source throws `err` (for example mapped to a ConnectError). */
  error?(err: unknown): unknown;
  /**
   * The stream ended, called once: `undefined` when it completed; the error the consumer got
   * when it failed (after {@link error}); {@link clientWentAway} when the consumer stopped
   * reading before the end (its `return()`: for a response stream, the client went away).
   */
  end?(error: unknown): void;
}

/** The end a stream reports when its consumer stops reading before the end: Canceled. */
export function clientWentAway(): ConnectError {
  return new ConnectError("the client went away", Code.Canceled);
}

/**
 * `source` with `tap` applied to every message it yields, to its error and to its end: the one
 * way an interceptor touches each message of a request stream (client and bidi streams, and the
 * single request of a server stream, which connect-es also hands over as a stream) or of a
 * response stream. A plain async iterator, no generator: one object per stream, nothing queued,
 * and `return()` / `throw()` reach the source at once. After its end it only answers done.
 *
 * Model: connect-es's own stream transforms (`protocol/async-iterable.ts`), as one function
 * instead of one generator per interceptor.
 */
export function eachMessage<T, U = T>(
  source: AsyncIterable<T>,
  tap: MessageTap<T, U>,
): AsyncIterable<U> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<U> {
      const it = source[Symbol.asyncIterator]();
      let index = 0;
      let ended = false;
      const end = (error: unknown) => {
        if (ended) return;
        ended = true;
        tap.end?.(error);
      };
      const done = (): IteratorResult<U> => ({ done: true, value: undefined });
      return {
        async next() {
          for (;;) {
            if (ended) return done();
            let result: IteratorResult<T>;
            try {
              result = await it.next();
            } catch (err) {
              const error = tap.error === undefined ? err : tap.error(err);
              end(error);
              throw error;
            }
            if (result.done === true) {
              end(undefined);
              return done();
            }
            if (tap.each === undefined) return result as unknown as IteratorResult<U>;
            let value: U | typeof SKIP;
            try {
              const out = tap.each(result.value, index++);
              value = out instanceof Promise ? await out : out;
            } catch (err) {
              end(err);
              try {
                await it.return?.();
              } catch {
                // The error that ended the stream is the one the consumer gets, as in `for await`.
              }
              throw err;
            }
            if (value !== SKIP) return { done: false, value };
          }
        },
        async return(value?: unknown) {
          end(clientWentAway());
          if (it.return !== undefined) await it.return(value as T);
          return { done: true, value: value as U };
        },
        async throw(err?: unknown) {
          end(err);
          if (it.throw === undefined) throw err;
          return (await it.throw(err)) as unknown as IteratorResult<U>;
        },
      };
    },
  };
}
