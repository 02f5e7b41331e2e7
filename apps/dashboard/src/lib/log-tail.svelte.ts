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
  if (entry.message === "rpc" && typeof raw.method === "string") {
    // "/chat.ChatService/ListRooms" → "ListRooms OK 1.2 ms"; the service stays in a field.
    const [, service = "", method = raw.method] = /^\/?([^/]*)\/(.*)$/.exec(raw.method) ?? [];
    const duration = typeof raw.durationMs === "number" ? ` ${raw.durationMs} ms` : "";
    message = `${method} ${fieldText(raw.code ?? "")}${duration}`;
    delete raw.method;
    delete raw.code;
    delete raw.durationMs;
    raw.service = service;
  }
  const fields = Object.entries(raw).map(([key, value]) => ({ key, value: fieldText(value) }));
  return {
    key: `${time?.getTime() ?? entry.timestamp}|${entry.level}|${entry.message}|${JSON.stringify(entry.fields ?? {})}`,
    time,
    level: entry.level,
    message,
    fields,
    own: raw.client === CLIENT_NAME,
  };
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
  readonly #keys = new Set<string>();
  readonly #stream = new FollowedStream();
  #client: Client<typeof LogService> | undefined;

  /** Oldest first; without the dashboard's own calls unless {@link LogTail.showOwn}. */
  get lines(): readonly LogLine[] {
    return this.#showOwn ? this.#lines : this.#lines.filter((l) => !l.own);
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
    return this.#showOwn ? this.#held.length : this.#held.filter((l) => !l.own).length;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get state(): StreamState {
    return this.#stream.state;
  }

  /** While the state is `denied`: the server's refusal (a token without the admin role). */
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
