import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { AfterReset, HistoryReset } from "@switchboard/client";
import {
  type Member,
  type Message,
  MessageType,
  type Metric,
  type RoomInfo,
} from "@switchboard/proto/gen/chat/chat_pb";
import { type LogEntry, LogLevel } from "@switchboard/proto/gen/chat/log_pb";

// Human output shows text from other people: a control character (an ANSI escape, a carriage
// return) could redraw the terminal or forge a line, so they are shown escaped.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** `text` with control characters shown as `\n`, `\u001b`, … so it stays on one line. */
export function printable(text: string): string {
  return text.replace(CONTROL, (c) => JSON.stringify(c).slice(1, -1));
}

const pad2 = (n: number) => String(n).padStart(2, "0");

/** Local wall-clock time, `hh:mm:ss`; `--:--:--` when the message has none. */
export function formatClock(timestamp: Timestamp | undefined): string {
  if (timestamp === undefined) return "--:--:--";
  const d = timestampDate(timestamp);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** Local date and time, `YYYY-MM-DD hh:mm:ss`. */
export function formatDateTime(timestamp: Timestamp | undefined): string {
  if (timestamp === undefined) return "-";
  const d = timestampDate(timestamp);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${formatClock(timestamp)}`;
}

/**
 * One message as one line: `[room #offset hh:mm:ss] user: content` for chat, `-->`/`<--` for
 * JOIN/LEAVE and `***` for SYSTEM. Unstored messages (offset 0) have no `#offset`.
 */
export function formatMessage(m: Message): string {
  const where = [m.room, m.offset > 0n ? `#${m.offset}` : "", formatClock(m.timestamp)]
    .filter((part) => part !== "")
    .join(" ");
  const content = printable(m.content);
  const user = printable(m.user);
  switch (m.type) {
    case MessageType.JOIN:
      return `[${where}] --> ${content || `${user} joined`}`;
    case MessageType.LEAVE:
      return `[${where}] <-- ${content || `${user} left`}`;
    case MessageType.SYSTEM:
      return `[${where}] *** ${user}: ${content}`;
    default:
      return `[${where}] ${user}: ${content}`;
  }
}

/** Rows as left-aligned columns separated by two spaces, the last column unpadded. */
export function formatTable(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}

/** The `rooms` table, with a header. */
export function formatRooms(rooms: readonly RoomInfo[]): string[] {
  return formatTable([ROOM_HEADER, ...rooms.map(roomCells)]);
}

const ROOM_HEADER = ["ROOM", "MESSAGES", "LAST OFFSET", "MEMBERS", "CONNECTIONS"];

function roomCells(r: RoomInfo): string[] {
  return [
    printable(r.name),
    String(r.messageCount),
    String(r.lastOffset),
    String(r.memberCount),
    String(r.subscriberCount),
  ];
}

/**
 * One changed room of `rooms --watch`, with the time and the columns named:
 * `12:00:01 general  messages 12  last offset 12  members 2  connections 3`.
 */
export function formatRoomRow(r: RoomInfo, now = new Date()): string {
  const [name, messages, lastOffset, members, connections] = roomCells(r);
  const time = now.toTimeString().slice(0, 8);
  return `${time} ${name}  messages ${messages}  last offset ${lastOffset}  members ${members}  connections ${connections}`;
}

/** The `members` table, with a header. */
export function formatMembers(members: readonly Member[]): string[] {
  return formatTable([
    ["USER", "CONNECTIONS", "JOINED"],
    ...members.map((m) => [printable(m.user), String(m.connections), formatDateTime(m.joinedAt)]),
  ]);
}

/** A metric's labels as `{k="v",…}`, sorted by key; empty without labels. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",")}}`;
}

/** A metric's value with at most three decimals. */
export function formatValue(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(3).replace(/\.?0+$/, "");
}

/** One metric as one line: `<ISO time> name{labels} value` (close to Prometheus' text format). */
export function formatMetric(m: Metric): string {
  const time = m.timestamp === undefined ? "-" : timestampDate(m.timestamp).toISOString();
  return `${time} ${m.name}${formatLabels(m.labels)} ${formatValue(m.value)}`;
}

/**
 * One log line, readable as the dashboard's Logs page shows it: `hh:mm:ss.mmm LEVEL message`,
 * then the fields as `key=value` (logfmt: a string bare unless it has a space, a quote or `=`,
 * then JSON-quoted; anything else as JSON). An RPC's access line (`msg: "rpc"`) reads
 * `ListRooms OK 1.2 ms`, then `user=` and `error=` (a failed call's reason) first:
 * `12:00:01.234 INFO  GetHistory InvalidArgument 0.4 ms user=ann error="room is required"
 * service=chat.ChatService protocol=grpc …`. `--json` prints the entry as it came.
 */
export function formatLogEntry(e: LogEntry): string {
  const d = e.time === undefined ? new Date(Number(e.timestamp) * 1000) : timestampDate(e.time);
  const clock = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
  const level = (LogLevel[e.level] ?? String(e.level)).padEnd(5);
  let fields: Record<string, unknown> = { ...e.fields };
  let message = e.message;
  if (e.message === "rpc" && typeof fields.method === "string") {
    const { method: path, code, durationMs, user, error, ...rest } = fields;
    // "/chat.ChatService/ListRooms" → "ListRooms OK 1.2 ms"; the service stays as a field.
    const [, service = "", method = path] = /^\/?([^/]*)\/(.*)$/.exec(path) ?? [];
    const duration = typeof durationMs === "number" ? ` ${durationMs} ms` : "";
    message = `${method}${code === undefined ? "" : ` ${fieldText(code)}`}${duration}`;
    fields = {
      ...(user === undefined ? {} : { user }),
      ...(error === undefined ? {} : { error }),
      service,
      ...rest,
    };
  }
  const pairs = Object.entries(fields).map(([key, value]) => ` ${key}=${logfmtValue(value)}`);
  return `${clock} ${level} ${printable(message)}${printable(pairs.join(""))}`;
}

/** A field's value as text: a string bare, anything else as JSON. */
function fieldText(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** A logfmt value: bare when it can be, else JSON-quoted. */
function logfmtValue(value: unknown): string {
  const text = fieldText(value);
  return typeof value === "string" && (text === "" || /[\s"=]/.test(text))
    ? JSON.stringify(text)
    : text;
}

/**
 * The line a resumable stream prints before it reconnects:
 * `reconnecting… (attempt 2, next try in 0.8 s): server unavailable (connection refused)`.
 */
export function formatReconnecting(attempt: number, delayMs: number, cause: string): string {
  return `reconnecting… (attempt ${attempt}, next try in ${(delayMs / 1000).toFixed(1)} s): ${cause}`;
}

/**
 * The line a resumable stream prints when the room's log was reset under it, e.g.
 * `history of room general was reset: epoch Xy…Z (this client was at offset 50) is gone; the
 * room's log is now epoch Ab…C, offsets 1 to 61; following it from its start`.
 */
export function formatHistoryReset(reset: HistoryReset, action: AfterReset): string {
  const now =
    reset.epoch === ""
      ? "the room has no messages now"
      : reset.lastOffset === 0n
        ? `the room's log is now epoch ${reset.epoch}, with no messages`
        : reset.firstOffset === 0n
          ? `the room's log is now epoch ${reset.epoch}, last offset ${reset.lastOffset}`
          : `the room's log is now epoch ${reset.epoch}, offsets ${reset.firstOffset} to ${reset.lastOffset}`;
  const was =
    reset.staleEpoch === reset.epoch
      ? `its offsets went back below ${reset.staleOffset}, where this client was`
      : `epoch ${reset.staleEpoch} (this client was at offset ${reset.staleOffset}) is gone`;
  const next =
    action === "start"
      ? "following it from its start"
      : action === "end"
        ? "following its new messages only"
        : "stopping";
  return `history of room ${printable(reset.room)} was reset: ${was}; ${now}; ${next}`;
}
