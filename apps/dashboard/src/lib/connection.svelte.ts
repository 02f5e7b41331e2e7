import type { Transport } from "@connectrpc/connect";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { codeName, isOwnCancel } from "./connect-errors.ts";
import { storedSessionValue, storedValue, storeSessionValue, storeValue } from "./storage.ts";

/** The protocols a browser can speak with fetch (gRPC needs trailers and HTTP/2 control). */
export type WebProtocol = "connect" | "grpcweb";

export const WEB_PROTOCOLS: ReadonlyArray<{ value: WebProtocol; label: string }> = [
  { value: "connect", label: "Connect" },
  { value: "grpcweb", label: "gRPC-Web" },
];

/** Whether the server answers: before the first answer, after one, or after a network failure. */
export type Reachability = "connecting" | "online" | "offline";

/** One failed call, as the page lists it; repeats of the same failure are counted, not listed. */
export interface CallFailure {
  id: number;
  /** The RPC's method name, e.g. `SendMessage`. */
  rpc: string;
  code: string;
  message: string;
  at: Date;
  count: number;
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
const PROTOCOL_KEY = "switchboard.protocol";
// Session storage: the token lasts as long as the tab, not on disk for good.
const TOKEN_KEY = "switchboard.token";

// Codes a call ends with when the server could not be reached at all (connect-web reports a
// failed fetch as `unknown`).
const NETWORK_CODES = new Set([Code.Unavailable, Code.Unknown, Code.DeadlineExceeded]);

function initialProtocol(): WebProtocol {
  const fromUrl = new URLSearchParams(globalThis.location?.search ?? "").get("protocol");
  const value = fromUrl ?? storedValue(PROTOCOL_KEY);
  return value === "grpcweb" ? "grpcweb" : "connect";
}

/**
 * The page's link to the server: the chosen protocol, the clients built on it, whether the server
 * is reachable, and every failed call (seen by an interceptor, so no call can fail unseen).
 */
export class Connection {
  #protocol = $state<WebProtocol>("connect");
  #reachability = $state<Reachability>("connecting");
  #failures = $state<CallFailure[]>([]);
  #token = $state(storedSessionValue(TOKEN_KEY) ?? "");
  #unauthenticated = $state(false);
  #nextId = 1;
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
    try {
      const res = await next(req);
      this.#reachability = "online";
      if (!res.stream) return res;
      return { ...res, message: this.#watchStream(rpc, res.message, req.signal) };
    } catch (err) {
      this.#record(rpc, err, req.signal);
      throw err;
    }
  };

  async *#watchStream<T>(rpc: string, messages: AsyncIterable<T>, signal: AbortSignal) {
    try {
      yield* messages;
    } catch (err) {
      this.#record(rpc, err, signal);
      throw err;
    }
  }

  #record(rpc: string, err: unknown, signal: AbortSignal): void {
    if (isOwnCancel(err, signal)) return;
    const error = ConnectError.from(err);
    if (NETWORK_CODES.has(error.code)) this.#reachability = "offline";
    else this.#reachability = "online";
    if (error.code === Code.Unauthenticated) this.#unauthenticated = true;
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
    };
    this.#failures = [failure, ...this.#failures].slice(0, MAX_FAILURES);
  }
}
