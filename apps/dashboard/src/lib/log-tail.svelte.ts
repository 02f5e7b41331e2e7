import type { Client } from "@connectrpc/connect";
import { type LogEntry, LogLevel, type LogService } from "@switchboard/proto/gen/chat/log_pb";
import { followStream, type StreamState } from "./follow-stream.ts";
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
  message: string;
  /** The structured fields as one JSON line ("" when none). */
  fields: string;
}

function toLine(entry: LogEntry): LogLine {
  const time = toDate(entry.time);
  const fields = entry.fields === undefined ? {} : entry.fields;
  const json = Object.keys(fields).length === 0 ? "" : JSON.stringify(fields);
  return {
    key: `${time?.getTime() ?? entry.timestamp}|${entry.level}|${entry.message}|${json}`,
    time,
    level: entry.level,
    message: entry.message,
    fields: json,
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
  #minLevel = $state<LogLevel>(LogLevel.INFO);
  #state = $state<StreamState>("connecting");
  readonly #keys = new Set<string>();
  #abort: AbortController | undefined;
  #client: Client<typeof LogService> | undefined;

  /** Oldest first. */
  get lines(): readonly LogLine[] {
    return this.#lines;
  }

  /** Lines that arrived while paused. */
  get heldCount(): number {
    return this.#held.length;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get state(): StreamState {
    return this.#state;
  }

  get minLevel(): LogLevel {
    return this.#minLevel;
  }

  /** Changing the level clears the tail and reopens it with that level's backlog. */
  set minLevel(level: LogLevel) {
    if (level === this.#minLevel) return;
    this.#minLevel = level;
    this.clear();
    if (this.#abort !== undefined && this.#client !== undefined) this.start(this.#client);
  }

  /** Follows StreamLogs on `client` (reopening after drops) until {@link LogTail.stop}. */
  start(client: Client<typeof LogService>): void {
    this.stop();
    this.#client = client;
    const abort = new AbortController();
    this.#abort = abort;
    const minLevel = this.#minLevel;
    void followStream(
      (signal) => client.streamLogs({ minLevel, backlog: LOG_BACKLOG }, { signal }),
      (entry) => this.#receive(toLine(entry)),
      {
        signal: abort.signal,
        backoff: { initialMs: 250, maxMs: 5000 },
        onStateChange: (state) => {
          if (!abort.signal.aborted) this.#state = state;
        },
      },
    );
  }

  stop(): void {
    this.#abort?.abort();
    this.#abort = undefined;
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
