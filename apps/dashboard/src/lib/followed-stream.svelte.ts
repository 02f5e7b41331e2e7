import { Code, type ConnectError } from "@connectrpc/connect";
import { followStream, STREAM_BACKOFF, type StreamState } from "./follow-stream.ts";

/**
 * One server stream a page follows (through {@link followStream}) with its state as a rune:
 * {@link FollowedStream.follow} opens it again from scratch, replacing the one before, and
 * {@link FollowedStream.stop} ends it. State changes of a replaced or stopped stream are ignored,
 * so `state` always speaks of the current one. Shared by the metrics history and the log tail.
 */
export class FollowedStream {
  #state = $state<StreamState>("connecting");
  #refusal = $state.raw<ConnectError | undefined>(undefined);
  #abort: AbortController | undefined;

  get state(): StreamState {
    return this.#state;
  }

  /**
   * Why the page cannot follow the stream: while the state is `denied`, the server's
   * `permission_denied` error; while it is `reconnecting` after an `unauthenticated` one (no
   * token, or a refused one: retried, as a new token may come), that error. Otherwise undefined.
   */
  get refusal(): ConnectError | undefined {
    return this.#refusal;
  }

  /** A stream is open or being reopened (between `follow` and `stop`). */
  get following(): boolean {
    return this.#abort !== undefined;
  }

  /**
   * Stops the current stream and follows `open` instead, handing each message to `onMessage`
   * until {@link FollowedStream.stop} or the next `follow`.
   */
  follow<T>(
    open: (signal: AbortSignal) => AsyncIterable<T>,
    onMessage: (message: T) => void,
  ): void {
    this.stop();
    const abort = new AbortController();
    this.#abort = abort;
    void followStream(open, onMessage, {
      signal: abort.signal,
      backoff: STREAM_BACKOFF,
      onStateChange: (state, error) => {
        if (abort.signal.aborted) return;
        this.#state = state;
        const refused =
          state === "denied" || (state === "reconnecting" && error?.code === Code.Unauthenticated);
        this.#refusal = refused ? error : undefined;
      },
    });
  }

  stop(): void {
    this.#abort?.abort();
    this.#abort = undefined;
  }
}
