import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import type {
  ChatService,
  Message,
  SendMessageResponse,
} from "@switchboard/proto/gen/chat/chat_pb";
import { type BackoffOptions, createBackoff } from "./backoff.js";
import { describeError } from "./describe-error.js";
import type { AfterReset, HistoryReset } from "./history-reset.js";
import { subscribeResumable } from "./resumable-subscription.js";

/**
 * Where a chat session's room feed is. `connecting` once at the start; `live` whenever a
 * connection delivers its first message; `reconnecting` after each retriable failure, with the
 * attempt number (1 for the first retry), the delay before it (ms), the error and its cause in
 * words ({@link describeError}); `closed` once at the end, with the error that ended it unless
 * the session was closed or aborted.
 */
export type ChatSessionState =
  | { status: "connecting" }
  | { status: "live" }
  | {
      status: "reconnecting";
      attempt: number;
      delayMs: number;
      error: ConnectError;
      /** The error as a person reads it, e.g. "server unavailable (connection refused)". */
      cause: string;
    }
  | { status: "closed"; error?: ConnectError };

/** A send that failed and will be tried again with the same `clientMessageId`. */
export interface SendRetry {
  clientMessageId: string;
  /** Failed attempts so far, 1 for the first retry. */
  attempt: number;
  /** Delay before the next attempt, ms (cut short when the feed becomes live again). */
  delayMs: number;
  error: ConnectError;
  /** The error in words ({@link describeError}). */
  cause: string;
}

/** Which room, as whom, and how a {@link ChatSession} shows, sends and retries. */
export interface ChatSessionOptions {
  room: string;
  user: string;
  /**
   * Stored messages of the room delivered before the live feed: the newest `backlog` (default
   * 20; 0 for none). Ignored when `sinceOffset` is set.
   */
  backlog?: number;
  /** Deliver every stored message after this offset first (0: the whole history). */
  sinceOffset?: bigint;
  /**
   * The epoch `sinceOffset` was read in (a GetHistory answer's): a log reset since is reported
   * through `onHistoryReset` instead of being served as if it continued. Unset: not checked.
   */
  epoch?: string;
  /**
   * Follow the room without joining it (SubscribeRequest.watch_only: no JOIN, no LEAVE, not a
   * member) until the first send or {@link ChatSession.join}. Default false: joined from the start.
   */
  watchOnly?: boolean;
  /** Delays between reconnections and between send attempts; {@link BackoffOptions}. */
  backoff?: Partial<BackoffOptions>;
  /** Deadline of each SendMessage attempt, ms (a timed-out attempt is retried). Default 10 000. */
  sendTimeoutMs?: number;
  /** Aborting ends the session at once: the feed stops, unacknowledged sends reject (Canceled). */
  signal?: AbortSignal;
  /**
   * Called with each stored room message (CHAT, JOIN, LEAVE; offset > 0), in offset order,
   * exactly once across reconnections. The server's per-connection welcome (SYSTEM, offset 0,
   * not stored) is not passed here: the `live` state replaces it.
   */
  onMessage?: (message: Message) => void;
  /** Called on every state change, synchronously. */
  onStateChange?: (state: ChatSessionState) => void;
  /**
   * Called when the room's log was reset under the session (the server lost its data, or a
   * failover reused offsets: {@link HistoryReset}), before any message of the new log is
   * delivered; returns whether the feed follows the new log from its start or its end, or stops
   * ({@link AfterReset}). Without it, a reset closes the session with the server's refusal
   * (FailedPrecondition or OutOfRange): the session never goes on as if nothing happened.
   */
  onHistoryReset?: (reset: HistoryReset) => AfterReset;
  /** Called before each retry of a send. */
  onSendRetry?: (retry: SendRetry) => void;
  /** Idempotency keys for sends; default: a random 128-bit session prefix and a counter. */
  newClientMessageId?: () => string;
}

/** A room followed and written to across disconnects; see {@link createChatSession}. */
export interface ChatSession {
  readonly room: string;
  readonly user: string;
  /** The current state; {@link ChatSessionOptions.onStateChange} reports each change. */
  readonly state: ChatSessionState;
  /**
   * The offset of the last stored message delivered, or undefined before the first (and after a
   * history reset, until the new log's first).
   */
  readonly lastOffset: bigint | undefined;
  /** The epoch of the room log the feed follows ("" until known). */
  readonly epoch: string;
  /** Sends not yet acknowledged by the server (queued or in flight). */
  readonly pendingSends: number;
  /** True while the session follows the room without joining it ({@link ChatSessionOptions.watchOnly}). */
  readonly watching: boolean;
  /**
   * Joins the room: the feed's connection is replaced by a joined one, from the last offset
   * delivered (no gap, no duplicate), and the server stores the user's JOIN. A send joins first.
   * Does nothing when already joined.
   */
  join(): void;
  /**
   * Stores `content` in the room as the session's user. Resolves with the server's answer once
   * the message is stored (its id, timestamp and offset); the message itself also arrives
   * through `onMessage`, once. Sends go out one at a time, in call order, after the feed was
   * first live (so a user's JOIN precedes their messages). A retriable failure (Unavailable,
   * Unknown, Internal, Aborted, DeadlineExceeded, ResourceExhausted after its `retry-after-ms`,
   * a Canceled the caller did not cause) is retried with the same `clientMessageId` until the
   * server answers: a message is stored once however often it is sent.
   *
   * @throws ConnectError with the server's code for a message it refuses (InvalidArgument,
   *   PermissionDenied, …); Canceled when the session is aborted first; FailedPrecondition when
   *   the session is closing or closed.
   */
  send(content: string): Promise<SendMessageResponse>;
  /**
   * Ends the session. With `drain` (default true) it first waits until every send is settled
   * and the feed has delivered every acknowledged message, so nothing the user typed is lost
   * and their last line is shown; then it stops the feed. Resolves when the session is closed.
   */
  close(options?: { drain?: boolean }): Promise<void>;
  /**
   * Settles when the session ends: resolves after `close()` or an abort, rejects with the
   * ConnectError that ended the feed (PermissionDenied, NotFound, Unauthenticated, …).
   */
  readonly closed: Promise<void>;
}

interface PendingSend {
  content: string;
  clientMessageId: string;
  /** Failed attempts so far. */
  attempts: number;
  resolve(response: SendMessageResponse): void;
  reject(error: ConnectError): void;
}

const DEFAULT_BACKLOG = 20;
const DEFAULT_SEND_TIMEOUT_MS = 10_000;
/** Failures of a send that say nothing about the message itself: worth another attempt. */
const RETRIABLE_SEND = new Set<Code>([
  Code.Unavailable,
  Code.Unknown,
  Code.Internal,
  Code.Aborted,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Canceled,
]);

/**
 * A chat room session for Node and browsers: follows the room with SubscribeMessages (through
 * {@link subscribeResumable}, so the feed resumes by offset after a restart or a node failover,
 * with no gap and no duplicate) and sends with SendMessage, each message under its own
 * `client_message_id`, retried until acknowledged, so nothing typed is lost or stored twice.
 * The feed makes the user a member of the room (ListMembers) while the session is open.
 *
 * Why not the bidi `Chat` RPC: browsers cannot stream a request body, so `Chat` is Node-only;
 * it cannot resume (no offset to start from), it echoes the sender's own messages as SYSTEM
 * copies and sends heartbeats, and one broken stream loses every unacknowledged message with
 * it. SubscribeMessages and SendMessage work over every transport (connect-web and connect-node,
 * Connect, gRPC-Web, gRPC) and each has its own recovery: resume by offset, retry by key. This
 * is the design of chat clients over a durable log (e.g. Matrix's /sync with `since` plus
 * transaction ids on send).
 *
 * With `createFailoverTransport` under `client`, reconnections and send retries move to the next
 * node by themselves. State changes and messages arrive through the callbacks in `options`.
 *
 * The feed keeps its position as an offset in an epoch (the room log's id): when the room's log
 * was reset (the server's data lost, offsets reused after a failover), `options.onHistoryReset`
 * is told and chooses how the feed goes on; without it, the session closes with the refusal.
 */
export function createChatSession(
  client: Client<typeof ChatService>,
  options: ChatSessionOptions,
): ChatSession {
  const { room, user } = options;
  const controller = new AbortController();
  const outer = options.signal;
  const onOuterAbort = () => controller.abort(outer?.reason);
  if (outer?.aborted) controller.abort(outer.reason);
  else outer?.addEventListener("abort", onOuterAbort, { once: true });
  const signal = controller.signal;
  const newId = options.newClientMessageId ?? sessionIds();
  const sendTimeoutMs = options.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;

  let state: ChatSessionState = { status: "connecting" };
  let lastOffset: bigint | undefined;
  let epoch = options.sinceOffset === undefined ? "" : (options.epoch ?? "");
  let closing = false;
  let finished = false;
  let endError: ConnectError | undefined;
  const queue: PendingSend[] = [];
  let sending = false;
  /** Highest offset the server acknowledged for this session's sends, and its epoch. */
  let ackedOffset = 0n;
  let ackedEpoch = "";
  /** Wakes whoever waits for the next event (live, a delivered message, the end). */
  let wake: () => void = () => {};
  let changed = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const notifyChange = () => {
    const resolve = wake;
    changed = new Promise<void>((r) => {
      wake = r;
    });
    resolve();
  };
  let wasLive = false;
  const isLive = () => state.status === "live";
  let watching = options.watchOnly === true;
  /** Replaces the feed's connection when the session joins. */
  const resubscribe = new EventTarget();
  /** While a join's new connection has not been welcomed: sends wait (JOIN comes first). */
  let joining = false;

  const setState = (next: ChatSessionState) => {
    state = next;
    if (next.status === "live") wasLive = true;
    options.onStateChange?.(next);
    notifyChange();
  };

  const feed = async () => {
    const messages = subscribeResumable(
      client,
      {
        room,
        user,
        get watchOnly() {
          return watching;
        },
        ...(options.sinceOffset === undefined
          ? { backlog: options.backlog ?? DEFAULT_BACKLOG }
          : { sinceOffset: options.sinceOffset, ...(epoch === "" ? {} : { epoch }) }),
      },
      {
        signal,
        resubscribe,
        ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
        onHistoryReset(reset) {
          const action = options.onHistoryReset?.(reset) ?? "stop";
          if (action !== "stop") {
            // Offsets start again in the new log: nothing of it has been delivered yet.
            epoch = reset.epoch;
            lastOffset = undefined;
          }
          return action;
        },
        onStateChange(status, detail) {
          if (status === "live") {
            joining = false;
            if (detail?.epoch !== undefined && detail.epoch !== "") epoch = detail.epoch;
            // A join's new connection keeps the session live: no state change to report.
            if (state.status === "live") notifyChange();
            else setState({ status: "live" });
          } else if (status === "reconnecting" && detail?.error !== undefined) {
            setState({
              status: "reconnecting",
              attempt: detail.attempt ?? 1,
              delayMs: detail.delayMs ?? 0,
              error: detail.error,
              cause: describeError(detail.error).message,
            });
          }
        },
      },
    );
    // Stored messages only: the welcome comes with `live`, not here.
    for await (const message of messages) {
      lastOffset = message.offset;
      options.onMessage?.(message);
      notifyChange();
    }
  };

  const finish = (error: ConnectError | undefined) => {
    if (finished) return;
    finished = true;
    endError = error;
    outer?.removeEventListener("abort", onOuterAbort);
    controller.abort();
    const reason = error ?? new ConnectError("chat session closed", Code.Canceled);
    for (const pending of queue.splice(0)) pending.reject(reason);
    setState(error === undefined ? { status: "closed" } : { status: "closed", error });
  };

  const closed = feed().then(
    () => finish(undefined),
    (err: unknown) => {
      // Aborted by the caller or by close() while a callback ran: a normal end.
      if (signal.aborted) finish(undefined);
      else finish(ConnectError.from(err));
    },
  );
  const closedPromise = closed.then(() => {
    if (endError !== undefined) throw endError;
  });
  // A caller that never looks at `closed` still sees errors through onStateChange and send().
  closedPromise.catch(() => {});
  options.onStateChange?.(state);

  /** Resolves at the next event or after `ms`; never rejects. */
  const nextEvent = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      void changed.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });

  const sendLoop = async () => {
    sending = true;
    const backoff = createBackoff(options.backoff);
    try {
      while (queue.length > 0 && !finished) {
        if (!wasLive || joining) {
          await changed;
          continue;
        }
        const pending = queue[0] as PendingSend;
        const callOptions: CallOptions = { signal, timeoutMs: sendTimeoutMs };
        try {
          const response = await client.sendMessage(
            { room, user, content: pending.content, clientMessageId: pending.clientMessageId },
            callOptions,
          );
          queue.shift();
          backoff.reset();
          if (response.epoch !== ackedEpoch || response.offset > ackedOffset) {
            ackedOffset = response.offset;
            ackedEpoch = response.epoch;
          }
          pending.resolve(response);
          notifyChange();
        } catch (err) {
          if (finished || signal.aborted) break;
          const error = ConnectError.from(err);
          if (!RETRIABLE_SEND.has(error.code)) {
            queue.shift();
            pending.reject(error);
            notifyChange();
            continue;
          }
          const retryAfter = Number(error.metadata.get("retry-after-ms"));
          const delayMs =
            error.code === Code.ResourceExhausted && retryAfter > 0 ? retryAfter : backoff.next();
          pending.attempts++;
          const attempt = pending.attempts;
          options.onSendRetry?.({
            clientMessageId: pending.clientMessageId,
            attempt,
            delayMs,
            error,
            cause: describeError(error).message,
          });
          // Wait out the delay, but go at once when the feed comes back: the server is up.
          const deadline = Date.now() + delayMs;
          while (!finished && Date.now() < deadline) {
            const wasLiveBefore = isLive();
            await nextEvent(deadline - Date.now());
            if (!wasLiveBefore && isLive()) break;
          }
        }
      }
    } finally {
      sending = false;
      notifyChange();
    }
  };

  const session: ChatSession = {
    room,
    user,
    get state() {
      return state;
    },
    get lastOffset() {
      return lastOffset;
    },
    get epoch() {
      return epoch;
    },
    get pendingSends() {
      return queue.length;
    },
    get watching() {
      return watching;
    },
    join() {
      if (!watching || finished) return;
      watching = false;
      joining = true;
      resubscribe.dispatchEvent(new Event("resubscribe"));
      notifyChange();
    },
    closed: closedPromise,
    send(content) {
      if (finished) {
        return Promise.reject(
          endError ?? new ConnectError("chat session closed", Code.FailedPrecondition),
        );
      }
      if (closing) {
        return Promise.reject(new ConnectError("chat session closing", Code.FailedPrecondition));
      }
      // A watcher that speaks joins first (its JOIN is stored before the message).
      session.join();
      return new Promise<SendMessageResponse>((resolve, reject) => {
        queue.push({ content, clientMessageId: newId(), attempts: 0, resolve, reject });
        if (!sending) void sendLoop();
      });
    },
    async close({ drain = true } = {}) {
      closing = true;
      if (drain) {
        while (!finished && (queue.length > 0 || sending)) await changed;
        // Only within one log: an acknowledgement from another epoch (a reset raced the send)
        // names an offset the feed may never reach.
        while (
          !finished &&
          ackedOffset > 0n &&
          ackedEpoch === epoch &&
          (lastOffset ?? 0n) < ackedOffset
        ) {
          await changed;
        }
      }
      finish(undefined);
      await closed;
    },
  };
  return session;
}

/** `<32 hex digits>-<n>`: a random session prefix (crypto.getRandomValues, also in browsers). */
function sessionIds(): () => string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  const prefix = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  let counter = 0;
  return () => `${prefix}-${++counter}`;
}
