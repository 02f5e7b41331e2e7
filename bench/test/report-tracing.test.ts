// RESULTS.md's tracing section (issue 21) reads tracing.json's readings: medians with their
// ranges, the off/before ratio, and the cost of tracing as on − off, per request and per
// delivery (and per publish: per delivery × the room's subscribers).
import { describe, expect, it } from "vitest";
import { renderTracing, type TracingRun } from "../src/report/tracing.js";

const run: TracingRun = {
  measuredAt: "2026-12-07",
  before: "e99d78c0000000000000000000000000000000000",
  after: "abcdef10000000000000000000000000000000000",
  machine: "2 shared cores",
  commands: ["node src/unary-cpu.ts --traced after"],
  unary: [
    { protocol: "grpc-h2", before: [200, 210, 190], off: [205, 180, 220], on: [300, 320, 280] },
  ],
  fanout: [{ subscribers: 1000, before: [8, 9, 10], off: [9, 8, 10], on: [9.5, 9.2, 10.4] }],
};

describe("the tracing section", () => {
  it("shows medians with ranges, off ÷ before, and on − off per request, per delivery and per publish", () => {
    const md = renderTracing(run).join("\n");
    expect(md).toContain("## Tracing (issue 21)");
    expect(md).toContain(
      "| grpc-h2, server CPU µs/request | 200 (190–210) | 205 (180–220) | 1.02 | 300 (280–320) | 95.00 µs |",
    );
    expect(md).toContain(
      "| 1,000 subscribers, server CPU µs/delivery (net of idle) | 9.00 (8.00–10.00) | 9.00 (8.00–10.00) | 1.00 | 9.50 (9.20–10.40) | 0.50 µs | 500 µs |",
    );
    expect(md).toContain("e99d78c");
    expect(md).toContain("`node src/unary-cpu.ts --traced after`");
  });
});
