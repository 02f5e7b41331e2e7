import { ConnectError } from "@connectrpc/connect";
import { type BackoffOptions, createBackoff } from "@switchboard/client/web";

/** Where a followed stream is: opening, delivering, or waiting to open again after a failure. */
export type StreamState = "connecting" | "live" | "reconnecting" | "closed";

/** The backoff between reopenings of a dashboard stream: 250 ms doubling to 5 s. */
export const STREAM_BACKOFF: Partial<BackoffOptions> = { initialMs: 250, maxMs: 5000 };

/** How {@link followStream} reports and retries. */
export interface FollowOptions {
  signal: AbortSignal;
  onStateChange?: (state: StreamState, error?: ConnectError) => void;
  backoff?: Partial<BackoffOptions>;
}

/**
 * Keeps a server stream open for as long as `signal` allows: opens it with `open(signal, attempt)`
 * (attempt 0 first), hands every message to `onMessage`, and after any failure or clean end opens
 * it again after an exponential backoff. For streams a client can simply reopen (metrics, logs);
 * the room feed uses libs/client's subscribeResumable, which also resumes from an offset.
 * Resolves when `signal` is aborted; never rejects.
 */
export async function followStream<T>(
  open: (signal: AbortSignal, attempt: number) => AsyncIterable<T>,
  onMessage: (message: T) => void,
  options: FollowOptions,
): Promise<void> {
  const { signal } = options;
  const notify = options.onStateChange ?? (() => {});
  const backoff = createBackoff(options.backoff);
  let attempt = 0;
  notify("connecting");
  while (!signal.aborted) {
    let error: ConnectError | undefined;
    try {
      let first = true;
      for await (const message of open(signal, attempt)) {
        if (first) {
          first = false;
          backoff.reset();
          notify("live");
        }
        onMessage(message);
      }
    } catch (err) {
      if (signal.aborted) break;
      error = ConnectError.from(err);
    }
    attempt++;
    notify("reconnecting", error);
    const delayMs = backoff.next();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, delayMs);
      signal.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
    });
  }
  notify("closed");
}
