import { ruleUpperBound } from "@switchboard/client";
import {
  type Metric,
  MetricSchema,
  MetricsRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { type Command, Option } from "commander";
import { type CliRuntime, createCliContext, integerIn, untilInterrupted } from "../cli-context.js";
import { formatClock, formatLabels, formatMetric, formatTable, formatValue } from "../format.js";

/** A batch is complete when no metric has arrived for this long (the server sends one burst). */
const BATCH_QUIET_MS = 50;

/**
 * `metrics [--interval S] [--instance ID]`: StreamMetrics as a table redrawn in place for each
 * batch on a terminal, or one line per metric when stdout is a pipe or file.
 */
/** The longest interval, chat.proto's rule on MetricsRequest.interval_seconds. */
const MAX_INTERVAL_S = ruleUpperBound(MetricsRequestSchema.field.intervalSeconds);

export function addMetricsCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("metrics")
    .description("watch the server's live metrics (StreamMetrics)")
    .addOption(
      new Option("--interval <seconds>", `seconds between batches, 1 to ${MAX_INTERVAL_S}`)
        .argParser(integerIn(1, MAX_INTERVAL_S))
        .default(1),
    )
    .option("--instance <id>", "instance id to ask for")
    .action(async (opts: { interval: number; instance?: string }, command: Command) => {
      const ctx = createCliContext(command, runtime);
      const stdout = runtime.stdout as NodeJS.WriteStream;
      const live = !ctx.json && stdout.isTTY === true;
      // The latest value of each series (name + labels), in the order first seen.
      const latest = new Map<string, Metric>();
      let drawnLines = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const redraw = () => {
        timer = undefined;
        const first = latest.values().next().value;
        // Every row has the same instance label; the header shows it once.
        const instance = first?.labels.instance ?? "";
        const rows = [...latest.values()].map((m) => {
          const { instance: _, ...labels } = m.labels;
          return [m.name, formatLabels(labels), formatValue(m.value)];
        });
        const lines = [
          `switchboard metrics  ${instance || ctx.options.url}  ${formatClock(first?.timestamp)}  (Ctrl-C to stop)`,
          ...formatTable([["METRIC", "LABELS", "VALUE"], ...rows]),
        ];
        // Move up over the previous table and clear to the end of the screen, then draw anew.
        const rewind = drawnLines > 0 ? `\x1b[${drawnLines}F\x1b[0J` : "";
        stdout.write(`${rewind}${lines.join("\n")}\n`);
        drawnLines = lines.length;
      };
      try {
        await untilInterrupted(ctx, async () => {
          const metrics = ctx.chat.streamMetrics(
            { intervalSeconds: opts.interval, instanceId: opts.instance ?? "" },
            { signal: ctx.signal },
          );
          for await (const m of metrics) {
            if (ctx.json) ctx.printJson(MetricSchema, m);
            else if (!live) ctx.print(formatMetric(m));
            else {
              latest.set(`${m.name}${formatLabels(m.labels)}`, m);
              if (timer !== undefined) clearTimeout(timer);
              timer = setTimeout(redraw, BATCH_QUIET_MS);
            }
          }
        });
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    });
}
