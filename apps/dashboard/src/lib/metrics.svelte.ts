import type { Client, ConnectError } from "@connectrpc/connect";
import { ChatService, type Metric } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import type { StreamState } from "./follow-stream.ts";
import { FollowedStream } from "./followed-stream.svelte.ts";

/** How much history the charts keep, ms. */
export const METRICS_WINDOW_MS = 5 * 60 * 1000;

/** One line on a chart: which metric (by name and labels) it plots. */
export interface SeriesSpec {
  key: string;
  label: string;
  name: string;
  labels?: Record<string, string>;
}

/** One chart: a title, a unit, and its lines. */
export interface ChartSpec {
  id: string;
  title: string;
  unit: string;
  series: SeriesSpec[];
}

/**
 * The RPCs the server reports `open_streams` for: every streaming method of its services, by
 * name, read from the generated descriptors (a new streaming RPC gets its line by itself).
 */
const STREAMING_RPCS = [ChatService, LogService]
  .flatMap((service) => service.methods)
  .filter((method) => method.methodKind !== "unary")
  .map((method) => method.name);

/** The charts, in page order, from the metric names StreamMetrics sends (chat-service.ts). */
export const CHARTS: readonly ChartSpec[] = [
  {
    id: "cpu",
    title: "CPU",
    unit: "% of one core",
    series: [{ key: "cpu", label: "process", name: "cpu_usage" }],
  },
  {
    id: "memory",
    title: "Memory",
    unit: "MiB",
    series: [
      { key: "rss", label: "resident", name: "memory_usage", labels: { type: "resident" } },
      { key: "heap", label: "heap used", name: "memory_usage", labels: { type: "heap_used" } },
    ],
  },
  {
    id: "event-loop",
    title: "Event-loop delay",
    unit: "ms",
    series: [
      { key: "p50", label: "p50", name: "event_loop_delay_ms", labels: { quantile: "0.5" } },
      { key: "p99", label: "p99", name: "event_loop_delay_ms", labels: { quantile: "0.99" } },
      { key: "max", label: "max", name: "event_loop_delay_ms", labels: { quantile: "1" } },
    ],
  },
  {
    id: "messages",
    title: "Messages per second",
    unit: "messages/s",
    series: [
      { key: "published", label: "published", name: "messages_published_per_second" },
      { key: "delivered", label: "delivered", name: "messages_delivered_per_second" },
      { key: "requests", label: "RPCs started", name: "requests_per_second" },
    ],
  },
  {
    id: "streams",
    title: "Open streams",
    unit: "streams",
    series: STREAMING_RPCS.map((rpc) => ({
      key: `streams:${rpc}`,
      label: rpc,
      name: "open_streams",
      labels: { rpc },
    })),
  },
];

const SERIES = CHARTS.flatMap((c) => c.series);

function matches(spec: SeriesSpec, metric: Metric): boolean {
  if (spec.name !== metric.name) return false;
  for (const [k, v] of Object.entries(spec.labels ?? {})) if (metric.labels[k] !== v) return false;
  return true;
}

/** uPlot's data layout: x values (Unix seconds), then one array per series. */
export type ChartData = [number[], ...Array<Array<number | null>>];

/**
 * The last {@link METRICS_WINDOW_MS} of StreamMetrics, one row per sampling instant, kept across
 * reconnections. Rows are plain arrays (charts read them often); `version` changes when they do.
 */
export class MetricsHistory {
  #version = $state(0);
  #latest = $state<Record<string, number>>({});
  readonly #times: number[] = [];
  readonly #values = new Map<string, Array<number | null>>(SERIES.map((s) => [s.key, []]));
  readonly #stream = new FollowedStream();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;

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

  /** Changes whenever new points arrive (read it to follow them). */
  get version(): number {
    return this.#version;
  }

  /** Sampling instants held. */
  get points(): number {
    void this.#version;
    return this.#times.length;
  }

  /** The newest value of each series, by key. */
  get latest(): Readonly<Record<string, number>> {
    return this.#latest;
  }

  /** The chart's data in uPlot's layout (new arrays each call). */
  data(chart: ChartSpec): ChartData {
    void this.#version;
    return [
      [...this.#times],
      ...chart.series.map((s) => [...(this.#values.get(s.key) ?? [])]),
    ] as ChartData;
  }

  /** Follows StreamMetrics on `client` (reopening after drops) until {@link MetricsHistory.stop}. */
  start(client: Client<typeof ChatService>): void {
    this.#stream.follow(
      (signal) => client.streamMetrics({ intervalSeconds: 1 }, { signal }),
      (metric) => this.add(metric),
    );
  }

  stop(): void {
    this.#stream.stop();
    clearTimeout(this.#flushTimer);
  }

  /** Adds one metric to the row of its timestamp (a new row when the timestamp is new). */
  add(metric: Metric): void {
    const spec = SERIES.filter((s) => matches(s, metric));
    if (spec.length === 0 || metric.timestamp === undefined) return;
    const t = Number(metric.timestamp.seconds) + metric.timestamp.nanos / 1e9;
    const last = this.#times.at(-1);
    if (last === undefined || Math.abs(t - last) > 0.001) {
      this.#times.push(t);
      for (const column of this.#values.values()) column.push(null);
      this.#trim(t);
    }
    const row = this.#times.length - 1;
    for (const s of spec) {
      const column = this.#values.get(s.key);
      if (column !== undefined) column[row] = metric.value;
    }
    this.#scheduleFlush();
  }

  #trim(now: number): void {
    const cutoff = now - METRICS_WINDOW_MS / 1000;
    let drop = 0;
    while (drop < this.#times.length && (this.#times[drop] as number) < cutoff) drop++;
    if (drop === 0) return;
    this.#times.splice(0, drop);
    for (const column of this.#values.values()) column.splice(0, drop);
  }

  // A batch is a dozen metrics arriving together; redraw once per batch, not once per metric.
  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      const latest: Record<string, number> = {};
      for (const [key, column] of this.#values) {
        const value = column.at(-1);
        if (value !== null && value !== undefined) latest[key] = value;
      }
      this.#latest = latest;
      this.#version++;
    }, 50);
  }
}
