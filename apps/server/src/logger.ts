import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import type { Config } from "./config.js";
import { LogTail } from "./telemetry/log-tail.js";

/**
 * The process logger: pino JSON lines to stdout (human-readable when stdout is a terminal),
 * and the same lines to a LogTail for LogService.StreamLogs. The tail keeps every line at the
 * configured level or above, whatever a StreamLogs reader then filters. Lines are written
 * asynchronously unless `sync` (the WORKERS primary: a few lines, the last ones just before
 * process.exit, which an asynchronous write still under way would lose).
 */
export function createLogger(
  config: Pick<Config, "logLevel" | "instanceId">,
  { sync = false }: { sync?: boolean } = {},
): {
  logger: Logger;
  logTail: LogTail;
} {
  const logTail = new LogTail(1000);
  const stdout = process.stdout.isTTY
    ? pretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname", sync })
    : pino.destination({ dest: 1, sync });
  const logger = pino(
    {
      level: config.logLevel,
      base: { instance: config.instanceId },
      redact: { paths: ["req.headers.authorization", "*.authorization"], censor: "[redacted]" },
    },
    pino.multistream([
      { level: "trace", stream: stdout },
      { level: "trace", stream: logTail },
    ]),
  );
  return { logger, logTail };
}
