// RESULTS.md's "Tracing" section (issue 21): the server's CPU per request and per delivery with
// OpenTelemetry off and on, from bench/results/tracing.json. That file holds the readings of
// unary-cpu.ts and fanout-cost.ts run with `--traced` (every value of every repetition, as the
// scripts print them); the section shows their medians and ranges.
import { median } from "../lib/stats.js";

/** The readings of one measurement: each repetition's value, per variant. */
export interface TracingReadings {
  /** The commit before tracing, same run. */
  before: number[];
  /** This commit, tracing off (no OTLP endpoint). */
  off: number[];
  /** This commit, tracing on at 100% sampling, exporting to a discarding collector. */
  on: number[];
}

export interface TracingRun {
  /** When, on which commits, on what machine, with which commands. */
  measuredAt: string;
  before: string;
  after: string;
  machine: string;
  commands: string[];
  /** Server CPU µs per SendMessage, by protocol (unary-cpu.ts). */
  unary: Array<{ protocol: string } & TracingReadings>;
  /** Server CPU µs per delivery, by room size (fanout-cost.ts, net of idle). */
  fanout: Array<{ subscribers: number } & TracingReadings>;
  /** How the measurer reads the figures (what the noise allows), one paragraph each. */
  notes?: string[];
}

const fmt = (v: number) => (Number.isNaN(v) ? "—" : v.toFixed(v >= 100 ? 0 : 2));
const cell = (values: number[]) =>
  `${fmt(median(values))} (${fmt(Math.min(...values))}–${fmt(Math.max(...values))})`;
const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2);

/** The section's lines. */
export function renderTracing(run: TracingRun): string[] {
  const out = [
    "## Tracing (issue 21)",
    "",
    `Server CPU per operation with OpenTelemetry tracing off and on, measured ${run.measuredAt} on ${run.machine}: ` +
      `the commit before tracing (${run.before.slice(0, 7)}), this commit (${run.after.slice(0, 7)}) without an OTLP endpoint ` +
      "(off), and the same with `OTEL_TRACES_SAMPLER=always_on` exporting OTLP/HTTP protobuf to a collector that " +
      "discards (on: every call a server span, every append a store span, every delivering node a delivery span). " +
      "Interleaved per repetition in one run; medians with min–max. The machine was shared: read the ranges, not the " +
      "last digit.",
    "",
    "| SendMessage (memory store) | before | tracing off | off ÷ before | tracing on (100%) | on − off per request |",
    "|---|---|---|---|---|---|",
  ];
  for (const u of run.unary) {
    out.push(
      `| ${u.protocol}, server CPU µs/request | ${cell(u.before)} | ${cell(u.off)} | ${ratio(u.off, u.before)} | ${cell(u.on)} | ${fmt(median(u.on) - median(u.off))} µs |`,
    );
  }
  out.push(
    "",
    "| fan-out (memory store, 20,000 deliveries/s) | before | tracing off | off ÷ before | tracing on (100%) | on − off per delivery | per publish |",
    "|---|---|---|---|---|---|---|",
  );
  for (const f of run.fanout) {
    const perDelivery = median(f.on) - median(f.off);
    out.push(
      `| ${f.subscribers.toLocaleString("en-US")} subscribers, server CPU µs/delivery (net of idle) | ${cell(f.before)} | ${cell(f.off)} | ${ratio(f.off, f.before)} | ${cell(f.on)} | ${fmt(perDelivery)} µs | ${fmt(perDelivery * f.subscribers)} µs |`,
    );
  }
  for (const note of run.notes ?? []) out.push("", note);
  out.push("", "Commands:", "", ...run.commands.map((c) => `- \`${c}\``), "");
  return out;
}
