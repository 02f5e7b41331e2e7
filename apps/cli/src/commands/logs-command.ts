import { ruleUpperBound } from "@switchboard/client";
import { LogEntrySchema, LogLevel, LogRequestSchema } from "@switchboard/proto/gen/chat/log_pb";
import { type Command, Option } from "commander";
import { type CliRuntime, createCliContext, integerIn, untilInterrupted } from "../cli-context.js";
import { formatLogEntry } from "../format.js";

const LEVELS = {
  trace: LogLevel.TRACE,
  debug: LogLevel.DEBUG,
  info: LogLevel.INFO,
  warn: LogLevel.WARN,
  error: LogLevel.ERROR,
  fatal: LogLevel.FATAL,
} as const;

/** `logs [--level info] [--backlog N]`: tails the server's log with LogService.StreamLogs. */
/** The largest backlog, log.proto's rule on LogRequest.backlog. */
const MAX_BACKLOG = ruleUpperBound(LogRequestSchema.field.backlog);

export function addLogsCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("logs")
    .description("tail the server's own log: recent lines, then new ones (LogService.StreamLogs)")
    .addOption(
      new Option("--level <level>", "lowest level shown")
        .choices(Object.keys(LEVELS))
        .default("info"),
    )
    .addOption(
      new Option("--backlog <n>", `recent lines first, 0 to ${MAX_BACKLOG}`)
        .argParser(integerIn(0, MAX_BACKLOG))
        .default(20),
    )
    .action(async (opts: { level: keyof typeof LEVELS; backlog: number }, command: Command) => {
      const ctx = createCliContext(command, runtime);
      await untilInterrupted(ctx, async () => {
        const entries = ctx.logs.streamLogs(
          { minLevel: LEVELS[opts.level], backlog: opts.backlog },
          { signal: ctx.signal },
        );
        for await (const entry of entries) {
          if (ctx.json) ctx.printJson(LogEntrySchema, entry);
          else ctx.print(formatLogEntry(entry));
        }
      });
    });
}
