import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type LogEntry,
  LogEntrySchema,
  LogLevel,
  type LogService,
} from "@switchboard/proto/gen/chat/log_pb";
import { BoundedQueue } from "../domain/bounded-queue.js";
import type { LogLine, LogTail } from "../telemetry/log-tail.js";
import type { Telemetry } from "../telemetry/telemetry.js";

/** What the LogService handler needs. */
export interface LogServiceDeps {
  logTail: LogTail;
  telemetry: Telemetry;
  /** Lines a reader may fall behind before its stream ends with ResourceExhausted. */
  queueLimit: number;
}

/**
 * chat.LogService: tails the server's own pino lines. LogLevel values equal pino's numeric
 * levels (LOG_LEVEL_INFO = 30), so filtering compares numbers.
 */
export function createLogService(deps: LogServiceDeps): ServiceImpl<typeof LogService> {
  return {
    async *streamLogs(req, ctx) {
      const minLevel = req.minLevel === LogLevel.UNSPECIFIED ? LogLevel.INFO : req.minLevel;
      const closeStream = deps.telemetry.streamOpened("StreamLogs");
      const queue = new BoundedQueue<LogLine>(deps.queueLimit);
      const unsubscribe = deps.logTail.subscribe((line) => {
        if (line.level >= minLevel) queue.push(line);
      });
      const stopWatching = queue.endOnAbort(ctx.signal);
      // Errors (SlowSubscriberError for a reader that fell behind, the call's end) leave through
      // the router's interceptors, which map them (edge/rpc/errors.ts).
      try {
        for (const line of deps.logTail.recent(req.backlog, minLevel)) yield toEntry(line);
        for await (const line of queue) yield toEntry(line);
      } finally {
        unsubscribe();
        stopWatching();
        closeStream();
      }
    },
  };
}

function toEntry(line: LogLine): LogEntry {
  return create(LogEntrySchema, {
    timestamp: BigInt(Math.floor(line.time / 1000)),
    message: line.msg,
    level: line.level as LogLevel,
    time: timestampFromMs(line.time),
    fields: jsonSafe(line.fields),
  });
}

// google.protobuf.Struct holds JSON values only; pino lines are JSON already, but be strict.
function jsonSafe(
  fields: Record<string, unknown>,
): Record<string, import("@bufbuild/protobuf").JsonValue> {
  return JSON.parse(JSON.stringify(fields)) as Record<
    string,
    import("@bufbuild/protobuf").JsonValue
  >;
}
