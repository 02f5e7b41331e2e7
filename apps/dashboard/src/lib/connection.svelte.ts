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
import { decodeJwt } from "jose";
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
 * Whether the server answers, and serves: before the first answer; after a call succeeded
 * (`online`); while it answers but refuses (`refused`: a call failed as `unauthenticated`, or
 * every call since the start or the last token change failed, with no success since); or during
 * an outage (a call failed with `unavailable`, and no call has succeeded since).
 */
export type Reachability = "connecting" | "online" | "refused" | "offline";

/** While {@link Connection.reachability} is `refused`: the newest refusal, as the page shows it. */
export interface Refusal {
  /** The RPC's method name, e.g. `WatchRooms`. */
  rpc: string;
  /** The Connect code's name, e.g. `unauthenticated`. */
  code: string;
  /** The server's message, e.g. `missing bearer token (Authorization: Bearer <token>)`. */
  message: string;
}

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
/** Failures about the token in use (refusals of a room or a role), cleared when it changes. */
const TOKEN_CODES = new Set([codeName(Code.PermissionDenied)]);
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
  #authMessage = $state("");
  #refusal = $state<Refusal | undefined>(undefined);
  #nextId = 1;
  #probing: AbortController | undefined;
  readonly #createTransport: TransportFactory;
  // Each transport's calls are observed with the token they carry: a call made with a token
  // since replaced (a stream still closing) says nothing about the one in use.
  #transport = $derived.by(() =>
    this.#createTransport({
      protocol: this.#protocol,
      interceptors: [this.#observer(this.#token)],
      token: this.#token === "" ? undefined : this.#token,
    }),
  );
  #chat = $derived(createClient(ChatService, this.#transport));
  #logs = $derived(createClient(LogService, this.#transport));
  #health = $derived(createClient(Health, this.#transport));

  constructor(createTransport: TransportFactory, protocol: WebProtocol = initialProtocol()) {
    this.#createTransport = createTransport;
    this.#protocol = protocol;
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

  /**
   * Setting the token rebuilds the clients, so every stream reopens with it. The refusals listed
   * for the previous token (`unauthenticated`, `permission_denied`) are cleared, and until a call
   * answers the connection is `connecting` again (an outage stays one).
   */
  set token(value: string) {
    const token = value.trim();
    if (token === this.#token) return;
    this.#token = token;
    this.#unauthenticated = false;
    this.#refusal = undefined;
    if (this.#reachability === "refused") this.#reachability = "connecting";
    this.#failures = this.#failures.filter((f) => !TOKEN_CODES.has(f.code));
    storeSessionValue(TOKEN_KEY, this.#token);
  }

  /**
   * A call was refused as unauthenticated since the token last changed (and none has succeeded
   * since). Such refusals are not listed in {@link Connection.failures}: the token form says it
   * once, with {@link Connection.authMessage}, as an outage is one state.
   */
  get authRequired(): boolean {
    return this.#unauthenticated;
  }

  /** While {@link Connection.authRequired}: the server's message ("invalid token: expired"). */
  get authMessage(): string {
    return this.#unauthenticated ? this.#authMessage : "";
  }

  /**
   * Who the server takes the caller to be: the `sub` claim of the token in use, while the server
   * has not refused it; undefined without a token, or for one without a `sub`. Read from the
   * token's payload (jose's decodeJwt) for display only: the server verifies the token and
   * overwrites every request's `user` with this same claim.
   */
  get subject(): string | undefined {
    if (this.#token === "" || this.#unauthenticated) return undefined;
    return subjectOf(this.#token);
  }

  /** While {@link Connection.reachability} is `refused`: why (the newest refusal). */
  get refusal(): Refusal | undefined {
    return this.#refusal;
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

  /** Sees every call of a transport built with `token`. */
  #observer(token: string): Interceptor {
    return (next) => async (req) => {
      const rpc = req.method.name;
      req.header.set(CLIENT_HEADER, CLIENT_NAME);
      try {
        const res = await next(req);
        if (!res.stream) {
          // A probe's answer may be NOT_SERVING: #probe decides.
          if (rpc !== PROBE_RPC) this.#succeeded(token);
          return res;
        }
        // A stream's headers are no success: over Connect a refusal arrives after them, in the
        // end of the stream. Its first message (or a clean end) is.
        return { ...res, message: this.#watchStream(rpc, res.message, req.signal, token) };
      } catch (err) {
        throw this.#record(rpc, err, req.signal, token);
      }
    };
  }

  async *#watchStream<T>(
    rpc: string,
    messages: AsyncIterable<T>,
    signal: AbortSignal,
    token: string,
  ) {
    let first = true;
    try {
      for await (const message of messages) {
        if (first) {
          first = false;
          this.#succeeded(token);
        }
        yield message;
      }
      if (first) this.#succeeded(token);
    } catch (err) {
      throw this.#record(rpc, err, signal, token);
    }
  }

  /** A call made with `token` succeeded: the server is reachable, and takes the token. */
  #succeeded(token: string): void {
    if (token !== this.#token) return;
    this.#online();
    this.#unauthenticated = false;
  }

  #online(): void {
    this.#answered("online");
  }

  /** The server answered: `online`, or `refused` (with why). Ends an outage. */
  #answered(state: "online" | "refused", refusal?: Refusal): void {
    const wasOffline = this.#reachability === "offline";
    this.#reachability = state;
    this.#refusal = refusal;
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

  /** Records a failed call made with `token` and returns the error its caller should see. */
  #record(rpc: string, err: unknown, signal: AbortSignal, token: string): unknown {
    if (isOwnCancel(err, signal)) return err;
    const error = toNetworkError(err);
    // Probes report through #probe: their failures are the outage's attempts.
    if (rpc === PROBE_RPC) return error;
    if (error.code === Code.Unavailable) {
      this.#offline();
      return error;
    }
    // A call with a replaced token (still closing after the change) is not about this one.
    if (token !== this.#token) return error;
    // A room's history reset is answered by the server, and shown where it happened (the room
    // view's notice, which follows the new log): not a failure to list.
    if (historyResetOf(error) !== undefined) {
      this.#online();
      return error;
    }
    const transient = TRANSIENT_CODES.has(error.code);
    // A broken stream while the server is unreachable is part of the outage.
    if (transient && this.#reachability === "offline") return error;
    // Anything else was answered by the server: it is reachable. A refused token means every
    // call fails (said once, by the token form: not listed); any other refusal does while
    // nothing has succeeded since the start or the last token change (a mistaken send on a
    // live page stays a failure of its own).
    if (!transient) {
      const refusal = { rpc, code: codeName(error.code), message: error.rawMessage };
      if (error.code === Code.Unauthenticated) {
        this.#unauthenticated = true;
        this.#authMessage = error.rawMessage;
        this.#answered("refused", refusal);
        return error;
      }
      if (this.#reachability !== "online") this.#answered("refused", refusal);
    }
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

/** The `sub` claim of a JWT's payload, decoded but not verified: undefined when it has none. */
export function subjectOf(token: string): string | undefined {
  try {
    const { sub } = decodeJwt(token);
    return typeof sub === "string" && sub !== "" ? sub : undefined;
  } catch {
    return undefined;
  }
}
