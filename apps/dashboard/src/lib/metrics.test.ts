import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MetricSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it, vi } from "vitest";
import { CHARTS, METRICS_WINDOW_MS, MetricsHistory } from "./metrics.svelte.ts";

const metric = (name: string, value: number, atMs: number, labels: Record<string, string> = {}) =>
  create(MetricSchema, { name, value, timestamp: timestampFromMs(atMs), labels });

describe("MetricsHistory", () => {
  it("keeps one row per sampling instant for the last five minutes", () => {
    vi.useFakeTimers();
    const history = new MetricsHistory();
    const cpu = CHARTS.find((c) => c.id === "cpu");
    const memory = CHARTS.find((c) => c.id === "memory");
    if (cpu === undefined || memory === undefined) throw new Error("charts missing");
    const start = 1_800_000_000_000;
    for (let s = 0; s <= 400; s++) {
      history.add(metric("cpu_usage", s, start + s * 1000));
      history.add(metric("memory_usage", 100 + s, start + s * 1000, { type: "resident" }));
    }
    vi.advanceTimersByTime(100);
    const [times, values] = history.data(cpu);
    expect(times).toHaveLength(METRICS_WINDOW_MS / 1000 + 1);
    expect(times.at(-1)).toBe(start / 1000 + 400);
    expect(values?.at(-1)).toBe(400);
    expect(history.data(memory)[1]?.at(-1)).toBe(500);
    expect(history.data(memory)[2]?.at(-1)).toBeNull();
    expect(history.latest.cpu).toBe(400);
    vi.useRealTimers();
  });
});
