// RESULTS.md's targets of issues 19 and 20 read the runs honestly: medians with ranges against
// the peers of the same run, a failed run is a failed row with its message (never a pass on
// missing data), bad answers void a unary row, a generator that was the limit leaves the tail
// undecided, a load that differed between servers is called out, and the header names the
// commit, the load average and the servers that were missing.
import { describe, expect, it } from "vitest";
import type { StepResult } from "../src/lib/fanout-load.js";
import type {
  FanoutCostRun,
  FanoutRun,
  MemoryRun,
  Results,
  UnaryRun,
  WakeUpRun,
} from "../src/lib/results.js";
import { loadDifferences } from "../src/report/fairness.js";
import { renderMarkdown } from "../src/report/markdown.js";
import { issue19Targets, issue20Targets, type TargetRow } from "../src/report/targets.js";

const LOAD = "0.10, 0.10, 0.10";
const base = (): Results => ({
  startedAt: "2026-12-01T00:00:00.000Z",
  machine: { nproc: "2", loadAtStart: "0.20, 0.30, 0.40" },
  quick: false,
  repetitions: 3,
  fanout: [],
  unary: [],
  memory: [],
  slowConsumer: [],
  streamThroughput: [],
  commit: "0123abc",
  unavailable: { "seed-go": "not available: SEED_GO_BIN is not set" },
});

const unary = (server: string, protocol: string, rps: number[], bad = 0): UnaryRun[] =>
  rps.map((r, i) => ({
    server,
    protocol,
    repetition: i + 1,
    rps: r,
    failed: 0,
    serial: { p50: 1, p99: 2, max: 3 },
    loaded: { p50: 1, p99: 2, max: 3, inFlight: 16 },
    badAnswers: i === 0 ? bad : 0,
    load: LOAD,
  }));

const step = (over: Partial<StepResult>): StepResult => ({
  rate: 1,
  offered: 5000,
  sent: 4,
  expected: 20_000,
  delivered: 20_000,
  deliveriesPerSecond: 5000,
  failedSends: 0,
  subscribersMissing: 0,
  p50: 20,
  p99: 60,
  max: 70,
  sustained: true,
  attempt: 1,
  generatorCpuPercent: 10,
  generatorCores: 1,
  generatorThreads: 0,
  generatorMsPerMessage: 12,
  generatorLimited: false,
  ...over,
});

const fanout = (
  server: string,
  subscribers: number,
  steps: StepResult[][],
  over: Partial<FanoutRun> = {},
): FanoutRun[] =>
  steps.map((s, i) => ({
    server,
    subscribers,
    repetition: i + 1,
    steps: s,
    sustained: s.filter((x) => x.sustained).at(-1)?.deliveriesPerSecond ?? 0,
    tries: 1,
    load: LOAD,
    connections: subscribers / 100,
    generatorThreads: 0,
    stepMs: 4000,
    schedule: [1, 2, 4],
    ...over,
  }));

const row = (rows: TargetRow[], start: string) => {
  const found = rows.find((r) => r.target.startsWith(start));
  if (found === undefined) throw new Error(`no row "${start}" in ${rows.map((r) => r.target)}`);
  return found;
};

describe("issue 19's targets", () => {
  it("unary: medians and ranges against the same run's peer; bad answers void the row", () => {
    const results = base();
    results.unary = [
      ...unary("switchboard", "grpc-h2", [9000, 10_000, 11_000]),
      ...unary("plain-grpc-js", "grpc-h2", [8000, 9000, 10_000]),
      ...unary("switchboard", "grpc-health-h2", [12_000, 12_000, 12_000], 3),
      ...unary("plain-grpc-js", "grpc-health-h2", [10_000, 10_000, 10_000]),
      ...unary("switchboard", "connect-json-h1", [6000, 6000, 6000]),
      ...unary("fastify-json", "connect-json-h1", [10_000, 10_000, 10_000]),
    ];
    const rows = issue19Targets(results);
    const grpc = row(rows, "Unary gRPC SendMessage");
    expect(grpc.measured).toBe("10,000 (9,000–11,000) req/s");
    expect(grpc.peers).toBe("plain-grpc-js 9,000 (8,000–10,000) req/s (1.11×)");
    expect(grpc.verdict).toBe("yes");
    const health = row(rows, "Health.Check");
    expect(health.verdict).toBe("failed");
    expect(health.note).toMatch(/switchboard rep 1: 3 bad/);
    // 0.6× the Fastify route: under 0.7×, over the 0.5× floor.
    expect(row(rows, "Connect JSON").verdict).toBe("floor only");
  });

  it("memory: RSS and live heap per stream at each count, a failed repetition fails the row", () => {
    const results = base();
    const run = (server: string, kib: number, heapKib: number | undefined, error?: string) =>
      [1, 2, 3].map(
        (repetition): MemoryRun => ({
          server,
          repetition,
          baselineRss: 100 * 2 ** 20,
          load: LOAD,
          points: [
            {
              streams: 10_000,
              opened: error !== undefined && repetition === 3 ? 9000 : 10_000,
              rss: 0,
              bytesPerStream: kib * 1024,
              ...(heapKib === undefined ? {} : { heapBytesPerStream: heapKib * 1024 }),
              ...(error !== undefined && repetition === 3 ? { error } : {}),
            },
          ],
        }),
      );
    results.memory = [...run("switchboard", 12, 5), ...run("plain-grpc-js", 15, 6)];
    let rows = issue19Targets(results);
    expect(row(rows, "Memory per idle stream at 10,000 streams, RSS").verdict).toBe("yes");
    expect(row(rows, "Memory per idle stream at 10,000 streams, RSS").peers).toContain(
      "plain-grpc-js 15.0 KiB (0.80×)",
    );
    expect(row(rows, "Memory per idle stream at 10,000 streams, live heap").measured).toBe(
      "5.0 KiB/stream",
    );
    expect(row(rows, "Memory per idle stream at 100,000").verdict).toBe("not measured");
    results.memory = [
      ...run("switchboard", 12, 5, "only 9000/10000 subscribed"),
      ...run("plain-grpc-js", 15, 6),
    ];
    rows = issue19Targets(results);
    const failed = row(rows, "Memory per idle stream at 10,000 streams, RSS");
    expect(failed.verdict).toBe("failed");
    expect(failed.note).toMatch(/1 of 3 repetitions failed: 9000\/10000 opened/);
  });

  it("fan-out cost: CPU per delivery against plain grpc-js; seed-go missing is said", () => {
    const results = base();
    const cost = (server: string, us: number[], error?: string): FanoutCostRun[] =>
      us.map((u, i) => ({
        server,
        repetition: i + 1,
        load: LOAD,
        subscribers: 1000,
        rate: 20_000,
        usPerDelivery: u,
        netUsPerDelivery: u - 1,
        ...(error === undefined ? {} : { error }),
      }));
    results.fanoutCost = [
      ...cost("switchboard", [9, 10, 11]),
      ...cost("plain-grpc-js", [11, 12, 13]),
    ];
    const rows = issue19Targets(results);
    const at1k = row(rows, "Fan-out server CPU per delivery at 1,000");
    expect(at1k.measured).toContain("10.00 (9.00–11.00) µs/delivery");
    expect(at1k.peers).toContain("plain-grpc-js 12.00 (11.00–13.00) µs (0.83×)");
    expect(at1k.peers).toContain("seed-go not in this run");
    expect(at1k.verdict).toBe("yes");
    expect(row(rows, "Fan-out server CPU per delivery at 10,000").verdict).toBe("not measured");
    results.fanoutCost.push(...cost("switchboard", [1], "999000 of 1000000 delivered"));
    expect(row(issue19Targets(results), "Fan-out server CPU per delivery at 1,000").verdict).toBe(
      "failed",
    );
  });

  it("the tail at 5,000 subscribers: met, not met, or undecided when the generator was the limit", () => {
    const results = base();
    results.fanout = [
      ...fanout("switchboard", 5000, [[step({})], [step({ p99: 80 })], [step({ p99: 90 })]]),
      ...fanout("plain-grpc-js", 5000, [[step({ p99: 150, sustained: false })]]),
    ];
    let tail = row(issue19Targets(results), "Fan-out p99");
    expect(tail.verdict).toBe("yes");
    expect(tail.measured).toContain("p99 80.0 (60.0–90.0) ms");
    expect(tail.measured).toContain("generator 10% CPU of 1 core(s), 0 thread(s)");
    expect(tail.peers).toContain("plain-grpc-js p99 150.0 ms");
    (results.fanout[1]?.steps[0] as StepResult).subscribersMissing = 1;
    tail = row(issue19Targets(results), "Fan-out p99");
    expect(tail.verdict).toBe("no");
    (results.fanout[2]?.steps[0] as StepResult).generatorLimited = true;
    tail = row(issue19Targets(results), "Fan-out p99");
    expect(tail.verdict).toBe("undecided");
    expect(tail.note).toMatch(/generator was the limit in 1 of 3/);
  });
});

describe("issue 20's targets", () => {
  const refusal =
    "switchboard-sqlite stopped before it listened (exit code 2): the sqlite store cannot be shared between processes";

  it("a SQLite WORKERS=2 that refuses to start is a failed row with the server's message", () => {
    const results = base();
    results.wholeMachine = [
      ...fanout("switchboard WORKERS=2 (SQLite)", 1000, [[], [], []], { error: refusal }),
      ...fanout("switchboard WORKERS=2 (Redis)", 1000, [
        [step({ deliveriesPerSecond: 40_000 })],
        [step({ deliveriesPerSecond: 40_000 })],
        [step({ deliveriesPerSecond: 40_000 })],
      ]),
    ];
    const rows = issue20Targets(results);
    const vsRedis = row(rows, "Whole machine, fan-out at 1,000 subscribers: SQLite");
    expect(vsRedis.verdict).toBe("failed");
    expect(vsRedis.measured).toBe("failed in 3 of 3 repetitions");
    expect(vsRedis.note).toBe(refusal);
    expect(vsRedis.peers).toBe("switchboard WORKERS=2 (Redis) 40,000 deliveries/s (—)");
    expect(row(rows, "Whole machine: SQLite WORKERS=2 ≥ 1.0× seed").peers).toBe(
      "seed-go GOMAXPROCS=2 not in this run",
    );
  });

  it("SQLite against Redis and the wake-up ratio once both run", () => {
    const results = base();
    results.wholeMachine = [
      ...fanout("switchboard WORKERS=2 (SQLite)", 1000, [[step({ deliveriesPerSecond: 36_000 })]]),
      ...fanout("switchboard WORKERS=2 (Redis)", 1000, [[step({ deliveriesPerSecond: 40_000 })]]),
    ];
    const wake = (rooms: number, net: number): WakeUpRun => ({
      server: "switchboard WORKERS=2 (Redis)",
      setup: "switchboard WORKERS=2 (Redis)",
      store: "redis",
      workers: 2,
      repetition: 1,
      load: LOAD,
      subscribers: rooms,
      rooms,
      rate: 200,
      usPerDelivery: net + 5,
      netUsPerDelivery: net,
    });
    results.wakeUp = [wake(1, 100), wake(1000, 110)];
    const rows = issue20Targets(results);
    expect(row(rows, "Whole machine, fan-out at 1,000 subscribers: SQLite").verdict).toBe("yes");
    const flat = row(
      rows,
      "Cross-worker wake-up cost flat with the room count, switchboard WORKERS=2 (Redis)",
    );
    expect(flat.peers).toContain("1.10×");
    expect(flat.verdict).toBe("yes");
    expect(
      row(
        rows,
        "Cross-worker wake-up cost flat with the room count, switchboard WORKERS=2 (SQLite)",
      ).verdict,
    ).toBe("not measured");
  });
});

describe("the same load for every server, and the header", () => {
  it("names a server that got other connections or another step schedule", () => {
    const runs = [
      ...fanout("switchboard", 5000, [[step({})]]),
      ...fanout("plain-grpc-js", 5000, [[step({})]], { connections: 10 }),
    ];
    const lines = loadDifferences(runs);
    expect(lines).toHaveLength(2);
    expect(lines.join("\n")).toMatch(/"connections":10.*plain-grpc-js rep 1/);
    expect(loadDifferences(fanout("switchboard", 5000, [[step({})], [step({})]]))).toEqual([]);
  });

  it("RESULTS.md states the commit, the load at start, missing servers and every failure", () => {
    const results = base();
    results.fanout = [
      ...fanout("switchboard", 5000, [[step({ p99: 150, sustained: false })]]),
      ...fanout("plain-grpc-js", 5000, [[step({})]], { connections: 10 }),
    ];
    results.wholeMachine = fanout("switchboard WORKERS=2 (SQLite)", 1000, [[]], {
      error: "refused: the sqlite store cannot be shared between processes",
    });
    const md = renderMarkdown(results, []);
    expect(md).toContain("Commit measured: 0123abc.");
    expect(md).toContain("Load average at the start: 0.20, 0.30, 0.40.");
    expect(md).toContain(
      "Servers missing from this run: seed-go (not available: SEED_GO_BIN is not set).",
    );
    expect(md).toContain("**Not the same load for every server**");
    expect(md).toContain("## Targets (issue 19)");
    expect(md).toContain("## Targets (issue 20)");
    expect(md).toMatch(
      /- fan-out, switchboard, 5,000 subscribers, rep 1: step 1 msgs\/s \(5,000 offered\/s\), try 1: p99 150 ms/,
    );
    expect(md).toMatch(
      /- whole machine, switchboard WORKERS=2 \(SQLite\), 1,000 subscribers, rep 1: \*\*run failed\*\*: refused/,
    );
  });
});
