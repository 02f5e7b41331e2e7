import type { Client, ConnectError } from "@connectrpc/connect";
import { type LogEntry, LogLevel, type LogService } from "@switchboard/proto/gen/chat/log_pb";
import { CLIENT_NAME } from "./connection.svelte.ts";
import type { StreamState } from "./follow-stream.ts";
import { FollowedStream } from "./followed-stream.svelte.ts";
import { toDate } from "./format.ts";

/** Lines kept on screen, and lines held while paused. */
export const MAX_LOG_LINES = 1000;
/** Recent lines asked for when the tail (re)opens. */
export const LOG_BACKLOG = 200;

/** The levels the filter offers, lowest first. */
export const LOG_LEVELS: ReadonlyArray<{ value: LogLevel; label: string }> = [
  { value: LogLevel.TRACE, label: "trace" },
  { value: LogLevel.DEBUG, label: "debug" },
  { value: LogLevel.INFO, label: "info" },
  { value: LogLevel.WARN, label: "warn" },
  { value: LogLevel.ERROR, label: "error" },
  { value: LogLevel.FATAL, label: "fatal" },
];

/** The label of a level ("info"), or its number for one the page does not know. */
export function levelLabel(level: LogLevel): string {
  return LOG_LEVELS.find((l) => l.value === level)?.label ?? `${level}`;
}

/** What an RPC's access line (`msg: "rpc"`) says about the call. */
export interface RpcCall {
  /** The method's name, e.g. `SendMessage` (the service is in the `service` field). */
  method: string;
  /** The code the caller got, as the server logs it: `OK`, `InvalidArgument`, … */
  code: string;
  /** How long the call took, as text ("1.25 ms"), or "" when not logged. */
  duration: string;
  /** The token's subject, when authentication is on. */
  user: string | undefined;
  /** The request's id (the caller's `x-request-id`, or a UUID). */
  requestId: string | undefined;
}

/** How a code reads: `ok`; `client` (the caller's mistake or a refusal); `server` (a fault). */
export type CodeKind = "ok" | "client" | "server";

/** Codes that mean the server (or the path to it) failed, not the request (Connect spec). */
const SERVER_CODES = new Set([
  "Unknown",
  "Internal",
  "Unavailable",
  "DataLoss",
  "DeadlineExceeded",
  "Unimplemented",
]);

/** The kind of a logged code: `OK` is ok, server faults are `server`, the rest `client`. */
export function codeKind(code: string): CodeKind {
  if (code === "OK") return "ok";
  return SERVER_CODES.has(code) ? "server" : "client";
}

/** The code filter's value for every code but OK. */
export const FAILED_CODES = "failed";

/** A log line as the page shows it. */
export interface LogLine {
  key: string;
  time: Date | undefined;
  level: LogLevel;
  /**
   * What happened, readably: the line's message, and for an RPC's access line (`msg: "rpc"`)
   * "ListRooms OK 1.2 ms" instead.
   */
  message: string;
  /** The other structured fields, as `key`/`value` text (objects as compact JSON). */
  fields: ReadonlyArray<{ key: string; value: string }>;
  /** For an RPC's access line: the call. */
  rpc: RpcCall | undefined;
  /** The access line of a call this dashboard made (it sends `x-switchboard-client`). */
  own: boolean;
}

/** JSON values as a reader reads them: strings bare, everything else as JSON. */
function fieldText(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function toLine(entry: LogEntry): LogLine {
  const time = toDate(entry.time);
  const raw: Record<string, unknown> = entry.fields === undefined ? {} : { ...entry.fields };
  let message = entry.message;
  let rpc: RpcCall | undefined;
  if (entry.message === "rpc" && typeof raw.method === "string") {
    // "/chat.ChatService/ListRooms" → "ListRooms OK 1.2 ms"; the service stays in a field.
    const [, service = "", method = raw.method] = /^\/?([^/]*)\/(.*)$/.exec(raw.method) ?? [];
    const code = fieldText(raw.code ?? "");
    const duration = typeof raw.durationMs === "number" ? `${raw.durationMs} ms` : "";
    message = duration === "" ? `${method} ${code}` : `${method} ${code} ${duration}`;
    rpc = {
      method,
      code,
      duration,
      user: typeof raw.user === "string" ? raw.user : undefined,
      requestId: raw.requestId === undefined ? undefined : fieldText(raw.requestId),
    };
    delete raw.method;
    delete raw.code;
    delete raw.durationMs;
    // Shown apart, shortened (the full id on hover).
    delete raw.requestId;
    raw.service = service;
  }
  const fields = Object.entries(raw).map(([key, value]) => ({ key, value: fieldText(value) }));
  return {
    key: `${time?.getTime() ?? entry.timestamp}|${entry.level}|${entry.message}|${JSON.stringify(entry.fields ?? {})}`,
    time,
    level: entry.level,
    message,
    fields,
    rpc,
    own: raw.client === CLIENT_NAME,
  };
}

/** What the tail shows: every field "" for all lines; any set shows only matching RPC lines. */
export interface LogFilter {
  /** An RPC's method name, e.g. `SendMessage`. */
  method: string;
  /** A logged code (`InvalidArgument`), or {@link FAILED_CODES} for every code but OK. */
  code: string;
  /** The caller's subject. */
  user: string;
}

const NO_FILTER: LogFilter = { method: "", code: "", user: "" };

function matches(line: LogLine, filter: LogFilter): boolean {
  if (filter.method === "" && filter.code === "" && filter.user === "") return true;
  const { rpc } = line;
  if (rpc === undefined) return false;
  if (filter.method !== "" && rpc.method !== filter.method) return false;
  if (
    filter.code === FAILED_CODES
      ? rpc.code === "OK"
      : filter.code !== "" && rpc.code !== filter.code
  )
    return false;
  return filter.user === "" || rpc.user === filter.user;
}

/** The distinct values of `pick` over `lines`, sorted. */
function distinct(lines: readonly LogLine[], pick: (rpc: RpcCall) => string | undefined): string[] {
  const values = new Set<string>();
  for (const line of lines) {
    const value = line.rpc === undefined ? undefined : pick(line.rpc);
    if (value !== undefined && value !== "") values.add(value);
  }
  return [...values].sort();
}

/**
 * A live tail of LogService.StreamLogs at a minimum level, with pause: while paused, new lines
 * are held (at most {@link MAX_LOG_LINES}) and shown on resume. The tail reopens after a drop;
 * the backlog it gets again is matched against the lines shown, so nothing shows twice.
 */
export class LogTail {
  #lines = $state.raw<LogLine[]>([]);
  #held = $state.raw<LogLine[]>([]);
  #paused = $state(false);
  #showOwn = $state(false);
  #minLevel = $state<LogLevel>(LogLevel.INFO);
  #filter = $state<LogFilter>(NO_FILTER);
  readonly #keys = new Set<string>();
  readonly #stream = new FollowedStream();
  #client: Client<typeof LogService> | undefined;

  /**
   * Oldest first; without the dashboard's own calls unless {@link LogTail.showOwn}, and only the
   * RPC lines that match {@link LogTail.filter} when one is set.
   */
  get lines(): readonly LogLine[] {
    return this.#shown(this.#lines);
  }

  #shown(lines: readonly LogLine[]): LogLine[] {
    const filter = this.#filter;
    return lines.filter((l) => (this.#showOwn || !l.own) && matches(l, filter));
  }

  /** The method, code and user the tail is filtered by ("" for any). */
  get filter(): LogFilter {
    return this.#filter;
  }

  set filter(value: LogFilter) {
    this.#filter = { ...value };
  }

  /** The filter's choices: every value of the lines kept (own calls included when shown). */
  get choices(): { methods: string[]; codes: string[]; users: string[] } {
    const lines = this.#showOwn ? this.#lines : this.#lines.filter((l) => !l.own);
    return {
      methods: distinct(lines, (r) => r.method),
      codes: distinct(lines, (r) => r.code),
      users: distinct(lines, (r) => r.user),
    };
  }

  /** Whether the access lines of this dashboard's own calls are shown (off by default). */
  get showOwn(): boolean {
    return this.#showOwn;
  }

  set showOwn(value: boolean) {
    this.#showOwn = value;
  }

  /** Lines that arrived while paused (counted as {@link LogTail.lines} would show them). */
  get heldCount(): number {
    return this.#shown(this.#held).length;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get state(): StreamState {
    return this.#stream.state;
  }

  /**
   * While the state is `denied`: the server's refusal (a token without the admin role); while
   * retrying after `unauthenticated` (no token, or a refused one): that error.
   */
  get refusal(): ConnectError | undefined {
    return this.#stream.refusal;
  }

  get minLevel(): LogLevel {
    return this.#minLevel;
  }

  /** Changing the level clears the tail and reopens it with that level's backlog. */
  set minLevel(level: LogLevel) {
    if (level === this.#minLevel) return;
    this.#minLevel = level;
    this.clear();
    if (this.#stream.following && this.#client !== undefined) this.start(this.#client);
  }

  /** Follows StreamLogs on `client` (reopening after drops) until {@link LogTail.stop}. */
  start(client: Client<typeof LogService>): void {
    this.#client = client;
    const minLevel = this.#minLevel;
    this.#stream.follow(
      (signal) => client.streamLogs({ minLevel, backlog: LOG_BACKLOG }, { signal }),
      (entry) => this.#receive(toLine(entry)),
    );
  }

  stop(): void {
    this.#stream.stop();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    if (this.#held.length > 0) {
      this.#lines = [...this.#lines, ...this.#held].slice(-MAX_LOG_LINES);
      this.#held = [];
    }
  }

  clear(): void {
    this.#lines = [];
    this.#held = [];
    this.#keys.clear();
  }

  #receive(line: LogLine): void {
    if (this.#keys.has(line.key)) return;
    this.#keys.add(line.key);
    if (this.#keys.size > 4 * MAX_LOG_LINES) {
      // Forget the oldest keys; a backlog never reaches that far back.
      const keep = [...this.#keys].slice(-2 * MAX_LOG_LINES);
      this.#keys.clear();
      for (const k of keep) this.#keys.add(k);
    }
    if (this.#paused) this.#held = [...this.#held, line].slice(-MAX_LOG_LINES);
    else this.#lines = [...this.#lines, line].slice(-MAX_LOG_LINES);
  }
}
