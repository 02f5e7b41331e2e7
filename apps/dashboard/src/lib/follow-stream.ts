import { Code, ConnectError } from "@connectrpc/connect";
import { type BackoffOptions, createBackoff } from "@switchboard/client/web";

/**
 * Where a followed stream is: opening, delivering, waiting to open again after a failure,
 * stopped, or refused by the server for this caller (`permission_denied`, e.g. a token without
 * the role the RPC needs), which opening it again would only repeat.
 */
export type StreamState = "connecting" | "live" | "reconnecting" | "closed" | "denied";

/** The backoff between reopenings of a dashboard stream: 250 ms doubling to 5 s. */
export const STREAM_BACKOFF: Partial<BackoffOptions> = { initialMs: 250, maxMs: 5000 };

/**
 * Fired (`"online"`) when the page's connection finds the server again after an outage
 * (connection.svelte.ts). Every followed stream waiting out its backoff opens again at once, so
 * that the room list, metrics and logs are live when the header says "Live", not up to
 * `STREAM_BACKOFF.maxMs` later.
 */
export const serverBack = new EventTarget();

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
 * A `permission_denied` refusal is not retried: the state becomes `denied`, with the error, and
 * the stream stays closed (a new token rebuilds the clients and the page follows anew).
 * Resolves when `signal` is aborted or the server refused; never rejects.
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
    // A stream that ended because `signal` was aborted is over, thrown or not: waiting out a
    // backoff on an aborted signal would never be cut short.
    if (signal.aborted) break;
    if (error?.code === Code.PermissionDenied) {
      notify("denied", error);
      return;
    }
    attempt++;
    notify("reconnecting", error);
    const delayMs = backoff.next();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, delayMs);
      signal.addEventListener("abort", done, { once: true });
      serverBack.addEventListener("online", done, { once: true });
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        serverBack.removeEventListener("online", done);
        resolve();
      }
    });
  }
  notify("closed");
}
