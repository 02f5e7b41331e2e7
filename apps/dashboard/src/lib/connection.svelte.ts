import type { Transport } from "@connectrpc/connect";
import {
  type Client,
  Code,
  type ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { createBackoff, historyResetOf } from "@switchboard/client/web";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { codeName, isOwnCancel, toNetworkError } from "./connect-errors.ts";
import { serverBack } from "./follow-stream.ts";
import { storedSessionValue, storedValue, storeSessionValue, storeValue } from "./storage.ts";

/** The protocols a browser can speak with fetch (gRPC needs trailers and HTTP/2 control). */
export type WebProtocol = "connect" | "grpcweb";

export const WEB_PROTOCOLS: ReadonlyArray<{ value: WebProtocol; label: string }> = [
  { value: "connect", label: "Connect" },
  { value: "grpcweb", label: "gRPC-Web" },
];

/**
 * Whether the server answers: before the first answer, after one, or during an outage (a call
 * failed with `unavailable`, and no call has succeeded since).
 */
export type Reachability = "connecting" | "online" | "offline";

/** The header every call of the dashboard carries, so the server's access log can tell them apart. */
export const CLIENT_HEADER = "x-switchboard-client";
export const CLIENT_NAME = "dashboard";

/** One failed call, as the page lists it; repeats of the same failure are counted, not listed. */
export interface CallFailure {
  id: number;
  /** The RPC's method name, e.g. `SendMessage`. */
  rpc: string;
  code: string;
  message: string;
  at: Date;
  count: number;
  /**
   * A code a broken connection also ends calls with (unknown, internal, deadline_exceeded,
   * aborted): cleared when an outage begins within {@link OUTAGE_LEAD_MS} of it.
   */
  transient: boolean;
}

/** What a transport is built from: the interceptors must run on every call. */
export interface TransportChoice {
  protocol: WebProtocol;
  interceptors: Interceptor[];
  /** A bearer token to send as `Authorization: Bearer …`; undefined for none. */
  token: string | undefined;
}

/** Builds the transport for a protocol (and token, when the server requires one). */
export type TransportFactory = (choice: TransportChoice) => Transport;

const MAX_FAILURES = 20;
/**
 * Failures this long before an outage began are counted as its first symptoms (a stream cut by
 * the restart, then a refused reconnection) and cleared with it, ms.
 */
export const OUTAGE_LEAD_MS = 3000;
/** Reconnection probes (gRPC health Check) during an outage: delays between them, ms. */
const PROBE_BACKOFF = { initialMs: 500, maxMs: 5000 };
/** A probe that has not answered within this is a failed attempt, ms. */
const PROBE_TIMEOUT_MS = 3000;
/** The probe's method name (grpc.health.v1.Health/Check). */
const PROBE_RPC = "Check";
/** Codes a call may end with because its connection broke, not because of what it asked. */
const TRANSIENT_CODES = new Set([
  Code.Unknown,
  Code.Internal,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Canceled,
]);
const PROTOCOL_KEY = "switchboard.protocol";
// Session storage: the token lasts as long as the tab, not on disk for good.
const TOKEN_KEY = "switchboard.token";

function initialProtocol(): WebProtocol {
  const fromUrl = new URLSearchParams(globalThis.location?.search ?? "").get("protocol");
  const value = fromUrl ?? storedValue(PROTOCOL_KEY);
  return value === "grpcweb" ? "grpcweb" : "connect";
}

/**
 * The page's link to the server: the chosen protocol, the clients built on it, whether the server
 * is reachable, and every failed call (seen by an interceptor, so no call can fail unseen).
 *
 * An outage is one state, not a pile of failures: the first call that fails with `unavailable`
 * (a refused connection, which fetch reports as a TypeError and connect-web as `unknown`, is
 * turned into `unavailable` here, for every caller) makes the page `offline`; from then on the
 * connection probes the server (gRPC health Check, with backoff: "reconnecting (attempt n)")
 * until it answers SERVING or any other call succeeds. Failures during the outage, and those in
 * the {@link OUTAGE_LEAD_MS} before it, are not listed: they were the outage, and it is shown.
 */
export class Connection {
  #protocol = $state<WebProtocol>("connect");
  #reachability = $state<Reachability>("connecting");
  #attempt = $state(0);
  #failures = $state<CallFailure[]>([]);
  #token = $state(storedSessionValue(TOKEN_KEY) ?? "");
  #unauthenticated = $state(false);
  #nextId = 1;
  #probing: AbortController | undefined;
  readonly #createTransport: TransportFactory;
  readonly #interceptors: Interceptor[];
  #transport = $derived.by(() =>
    this.#createTransport({
      protocol: this.#protocol,
      interceptors: this.#interceptors,
      token: this.#token === "" ? undefined : this.#token,
    }),
  );
  #chat = $derived(createClient(ChatService, this.#transport));
  #logs = $derived(createClient(LogService, this.#transport));
  #health = $derived(createClient(Health, this.#transport));

  constructor(createTransport: TransportFactory, protocol: WebProtocol = initialProtocol()) {
    this.#createTransport = createTransport;
    this.#protocol = protocol;
    this.#interceptors = [this.#observe];
  }

  get protocol(): WebProtocol {
    return this.#protocol;
  }

  /** Switching protocol rebuilds the clients; every open stream restarts on the new one. */
  set protocol(value: WebProtocol) {
    this.#protocol = value;
    storeValue(PROTOCOL_KEY, value);
  }

  get protocolLabel(): string {
    return WEB_PROTOCOLS.find((p) => p.value === this.#protocol)?.label ?? this.#protocol;
  }

  /** The bearer token sent with every call ("" for none). */
  get token(): string {
    return this.#token;
  }

  /** Setting the token rebuilds the clients, so every stream reopens with it. */
  set token(value: string) {
    this.#token = value.trim();
    this.#unauthenticated = false;
    storeSessionValue(TOKEN_KEY, this.#token);
  }

  /** A call was refused as unauthenticated since the token last changed. */
  get authRequired(): boolean {
    return this.#unauthenticated;
  }

  get reachability(): Reachability {
    return this.#reachability;
  }

  /** During an outage: reconnection attempts so far (1 while the first is under way). */
  get attempt(): number {
    return this.#attempt;
  }

  /** Newest first. */
  get failures(): readonly CallFailure[] {
    return this.#failures;
  }

  get chat(): Client<typeof ChatService> {
    return this.#chat;
  }

  get logs(): Client<typeof LogService> {
    return this.#logs;
  }

  dismiss(id: number): void {
    this.#failures = this.#failures.filter((f) => f.id !== id);
  }

  dismissAll(): void {
    this.#failures = [];
  }

  #observe: Interceptor = (next) => async (req) => {
    const rpc = req.method.name;
    req.header.set(CLIENT_HEADER, CLIENT_NAME);
    try {
      const res = await next(req);
      // A probe's answer may be NOT_SERVING: #probe decides.
      if (rpc !== PROBE_RPC) this.#online();
      if (!res.stream) return res;
      return { ...res, message: this.#watchStream(rpc, res.message, req.signal) };
    } catch (err) {
      throw this.#record(rpc, err, req.signal);
    }
  };

  async *#watchStream<T>(rpc: string, messages: AsyncIterable<T>, signal: AbortSignal) {
    try {
      yield* messages;
    } catch (err) {
      throw this.#record(rpc, err, signal);
    }
  }

  #online(): void {
    const wasOffline = this.#reachability === "offline";
    this.#reachability = "online";
    this.#attempt = 0;
    this.#probing?.abort();
    this.#probing = undefined;
    // Streams waiting out a backoff open again now rather than up to 5 s after "Live".
    if (wasOffline) serverBack.dispatchEvent(new Event("online"));
  }

  #offline(): void {
    if (this.#reachability === "offline") return;
    this.#reachability = "offline";
    this.#attempt = 1;
    // The failures that led into the outage were its first symptoms.
    const since = Date.now() - OUTAGE_LEAD_MS;
    this.#failures = this.#failures.filter((f) => !f.transient || f.at.getTime() < since);
    void this.#probe();
  }

  /** Checks the server's health with backoff until it serves again or the outage ends. */
  async #probe(): Promise<void> {
    const abort = new AbortController();
    this.#probing = abort;
    const backoff = createBackoff(PROBE_BACKOFF);
    while (!abort.signal.aborted && this.#reachability === "offline") {
      await new Promise((resolve) => setTimeout(resolve, backoff.next()));
      if (abort.signal.aborted) return;
      try {
        const res = await this.#health.check(
          { service: "" },
          { signal: abort.signal, timeoutMs: PROBE_TIMEOUT_MS },
        );
        // A server that is shutting down answers NOT_SERVING: still an outage.
        if (res.status === ServingStatus.SERVING) {
          this.#online();
          return;
        }
      } catch {
        // Another attempt after the next delay.
      }
      if (!abort.signal.aborted) this.#attempt++;
    }
  }

  /** Records a failed call and returns the error its caller should see. */
  #record(rpc: string, err: unknown, signal: AbortSignal): unknown {
    if (isOwnCancel(err, signal)) return err;
    const error = toNetworkError(err);
    // Probes report through #probe: their failures are the outage's attempts.
    if (rpc === PROBE_RPC) return error;
    if (error.code === Code.Unavailable) {
      this.#offline();
      return error;
    }
    // A room's history reset is answered by the server, and shown where it happened (the room
    // view's notice, which follows the new log): not a failure to list.
    if (historyResetOf(error) !== undefined) {
      this.#online();
      return error;
    }
    const transient = TRANSIENT_CODES.has(error.code);
    // A broken stream while the server is unreachable is part of the outage.
    if (transient && this.#reachability === "offline") return error;
    // Anything else was answered by the server: it is reachable.
    if (!transient) this.#online();
    if (error.code === Code.Unauthenticated) this.#unauthenticated = true;
    this.#list(rpc, error, transient);
    return error;
  }

  #list(rpc: string, error: ConnectError, transient: boolean): void {
    const code = codeName(error.code);
    const message = error.rawMessage;
    const [newest] = this.#failures;
    if (newest && newest.rpc === rpc && newest.code === code && newest.message === message) {
      newest.count++;
      newest.at = new Date();
      return;
    }
    const failure: CallFailure = {
      id: this.#nextId++,
      rpc,
      code,
      message,
      at: new Date(),
      count: 1,
      transient,
    };
    this.#failures = [failure, ...this.#failures].slice(0, MAX_FAILURES);
  }
}
