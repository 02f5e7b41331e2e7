// bench/results/RESULTS.md from results.json: medians over repetitions, ratios against the
// grpc-js peer (or the plain Fastify route for Connect JSON over HTTP/1.1), and the targets.
import type { StepResult } from "../lib/fanout-load.js";
import type { CrossNodeRun, FanoutRun, Results } from "../lib/results.js";
import { median } from "../lib/stats.js";
import { UNARY_LOAD } from "../scenarios/unary.js";
import { describeLoad, loadDifferences } from "./fairness.js";
import { issue19Targets, issue20Targets, targetsTable, WAKE_FLAT } from "./targets.js";
import { renderTracing, type TracingRun } from "./tracing.js";

/** Whether a figure is missing (NaN in memory, null once through results.json, or absent). */
const missing = (n: number | null | undefined): n is null | undefined =>
  typeof n !== "number" || Number.isNaN(n);
const int = (n: number | null | undefined) =>
  missing(n) ? "—" : Math.round(n).toLocaleString("en-US");
const ms = (n: number | null | undefined) =>
  missing(n) ? "—" : n < 10 ? n.toFixed(2) : n.toFixed(0);
const ratio = (a: number, b: number) =>
  Number.isNaN(a) || Number.isNaN(b) || b === 0 ? "—" : `${(a / b).toFixed(2)}×`;
const range = (all: number[]) => {
  const values = all.filter((v) => !missing(v));
  return values.length === 0 ? "" : ` (${int(Math.min(...values))}–${int(Math.max(...values))})`;
};
const unique = <T>(values: T[]) => [...new Set(values)];
const loads = (values: string[]) => unique(values).join("; ");

/** "Measured at …" under a section, when results.json records it. */
const measuredAt = (results: Results, scenario: string) => {
  const at = results.scenarioStartedAt?.[scenario];
  const commit = results.scenarioCommit?.[scenario];
  const load = results.scenarioLoad?.[scenario];
  return at === undefined
    ? []
    : [
        `Measured from ${at}${commit === undefined ? "" : ` at commit ${commit}`}` +
          `${load === undefined ? "" : `, load average ${load} at its start`}.`,
        "",
      ];
};

/** "Not in this run: seed-go (not available: …)" under a section. */
const notInRun = (results: Results) =>
  Object.keys(results.unavailable ?? {}).length === 0
    ? []
    : [
        `Not in this run: ${Object.entries(results.unavailable ?? {})
          .map(([server, reason]) => `${server} (${reason})`)
          .join("; ")}.`,
        "",
      ];

const us = (n: number | null | undefined) =>
  missing(n) ? "—" : n < 10 ? n.toFixed(2) : n.toFixed(1);
const known = (...values: number[]) => values.every((v) => !missing(v));

/** A run's highest sustained step, or its first step when none was sustained. */
function referenceStep(run: FanoutRun): StepResult {
  return (run.steps.filter((s) => s.sustained).at(-1) ?? run.steps[0]) as StepResult;
}

/** The generator's CPU % of a step, with its cores and threads, and a mark when it was the limit. */
function generatorCell(s: StepResult): string {
  if (s.generatorCores === undefined) return int(s.generatorCpuPercent);
  return (
    `${int(s.generatorCpuPercent)} (${s.generatorCores}, ${s.generatorThreads ?? 0})` +
    `${s.generatorLimited ? " **generator the limit**" : ""}`
  );
}

/** Why a step was not sustained, in words. */
export function whyNot(s: StepResult): string {
  const reasons: string[] = [];
  if (s.delivered < s.expected) reasons.push(`${s.expected - s.delivered} deliveries missing`);
  if ((s.subscribersMissing ?? 0) > 0)
    reasons.push(`${s.subscribersMissing} subscribers missed some`);
  if (s.failedSends > 0) reasons.push(`${s.failedSends} sends failed`);
  if (missing(s.p99) || s.p99 > 100) reasons.push(`p99 ${ms(s.p99)} ms`);
  if (s.generatorLimited) reasons.push("the generator was the limit");
  return reasons.join(", ");
}

/** Median µs/delivery of a server's runs at one room size, at each run's reference step. */
function costPerDelivery(
  results: Results,
  server: string,
  subscribers: number,
): { value: number; star: string } {
  const refs = results.fanout
    .filter((r) => r.server === server && r.subscribers === subscribers && r.steps.length > 0)
    .map(referenceStep);
  return {
    value: median(refs.map((s) => s.usPerDelivery ?? Number.NaN)),
    star: refs.some((s) => !s.sustained) ? "*" : "",
  };
}

/**
 * Server CPU µs per delivery at one offered load (deliveries/s), median over the runs that
 * reached it (first try); NaN when none did. Comparing room sizes at the same offered load keeps
 * per-step fixed costs and write batching (which grows with the rate) out of the ratio.
 */
function costAtOffered(
  results: Results,
  server: string,
  subscribers: number,
  offered: number,
): number {
  return median(
    results.fanout
      .filter((r) => r.server === server && r.subscribers === subscribers)
      .flatMap((r) =>
        r.steps.filter((s) => Math.abs(s.offered - offered) < 1 && (s.attempt ?? 1) === 1),
      )
      .map((s) => s.usPerDelivery ?? Number.NaN),
  );
}

/** The highest offered load (deliveries/s) Switchboard was measured at in every room size given. */
function commonOffered(results: Results, counts: number[]): number | undefined {
  const at = (c: number) =>
    new Set(
      results.fanout
        .filter((r) => r.server === "switchboard" && r.subscribers === c)
        .flatMap((r) => r.steps.map((s) => s.offered)),
    );
  const sets = counts.map(at);
  const common = [...(sets[0] ?? [])].filter((o) => sets.every((set) => set.has(o)));
  return common.length === 0 ? undefined : Math.max(...common);
}

/** " (top step)" when a run sustained the highest rate offered: the server's limit is higher. */
function topStepNote(runs: FanoutRun[]): string {
  return runs.some((r) => r.steps.length > 0 && r.steps.every((s) => s.sustained))
    ? " (every step sustained: the limit is above)"
    : "";
}

/**
 * Server and generator CPU % at the step where each run stopped (its last, not sustained): a
 * generator near 100% there means the load generator, not the server, set the limit.
 */
function atLimit(runs: FanoutRun[]): string {
  const limits = runs.map((r) => r.steps.at(-1)).filter((s) => s !== undefined && !s.sustained);
  if (limits.length === 0) return "—";
  const server = median(limits.map((s) => s?.serverCpuPercent ?? Number.NaN));
  const generator = median(limits.map((s) => s?.generatorCpuPercent ?? Number.NaN));
  return `${int(server)} / ${int(generator)}`;
}

/** The "repeated steps" cell: none when steps were not retried, else how many and how they went. */
function repeated(runs: FanoutRun[]): string {
  const legacy = runs.flatMap((r) => r.steps.filter((s) => s.retried === true));
  if (runs.some((r) => r.tries === undefined)) {
    return legacy.length === 0
      ? "none recorded (older run: a failed step was retried, only the last try kept)"
      : `${legacy.length} passed on a retry (first try not recorded)`;
  }
  const again = runs.flatMap((r) => r.steps.filter((s) => (s.attempt ?? 1) > 1));
  if (again.length === 0) return runs.every((r) => r.tries === 1) ? "none (no retry)" : "none";
  const passed = again.filter((s) => s.sustained).length;
  return `${again.length} repeated, ${passed} passed on a later try (every try is in the step table)`;
}

/** The targets of issue 12, each met or not, for the summary. */
interface Target {
  name: string;
  measured: string;
  met: boolean | undefined;
}

export function renderMarkdown(
  results: Results,
  charts: string[],
  tracing?: TracingRun | undefined,
): string {
  const out: string[] = [];
  const targets: Target[] = [];
  out.push("# Benchmark results", "");
  out.push(
    `Run started ${results.startedAt}; ${results.repetitions} repetition(s)${results.quick ? " (--quick: smoke run, not for comparison)" : ""}. ` +
      "Every figure is the median over repetitions; ranges are min–max. Servers pinned to core 0, " +
      "load generators to core 1. The load average (1/5/15 min, from /proc/loadavg) is noted beside each result: " +
      "the machine is shared. See bench/README.md for the method and how to rerun.",
    "",
  );
  out.push(
    `Commit measured: ${results.commit ?? "not recorded"}. Load average at the start: ${results.machine.loadAtStart ?? "not recorded"}.`,
    "",
    Object.keys(results.unavailable ?? {}).length === 0
      ? "Every server was available."
      : `Servers missing from this run: ${Object.entries(results.unavailable ?? {})
          .map(([server, reason]) => `${server} (${reason})`)
          .join("; ")}.`,
    "",
  );
  out.push("## Machine", "", "| | |", "|---|---|");
  for (const [k, v] of Object.entries(results.machine)) out.push(`| ${k} | ${v} |`);
  out.push("");

  // 1. Fan-out
  if (results.fanout.length > 0) {
    out.push(
      "## 1. Fan-out (one publisher, N subscribers, open-loop stepped rate)",
      "",
      ...measuredAt(results, "fanout"),
      ...notInRun(results),
    );
    out.push(
      "Sustained: every message delivered to every subscriber, no failed send, p99 publish-to-delivery ≤ 100 ms, " +
        "with latency measured on every delivery to every subscriber. " +
        "The figures beside the sustained rate are those of each repetition's highest sustained step (medians): latency " +
        "(p50 / p99 / max over every delivery), the server's largest event-loop delay and its GC pauses in that step, " +
        "and its CPU time per delivery (CPU seconds ÷ deliveries, /proc/<pid>/stat). `*`: no step was sustained; the " +
        "figures are the lowest step's. Ratios are of the sustained rates.",
      "",
    );
    const counts = unique(results.fanout.map((r) => r.subscribers)).sort((a, b) => a - b);
    for (const subs of counts) {
      const runs = results.fanout.filter((r) => r.subscribers === subs);
      const sustainedOf = (server: string) =>
        median(
          runs.filter((r) => r.server === server && r.steps.length > 0).map((r) => r.sustained),
        );
      out.push(`### ${int(subs)} subscribers`, "");
      const sameLoad = describeLoad(runs);
      const differences = loadDifferences(runs);
      if (sameLoad !== undefined) out.push(sameLoad, "");
      if (differences.length > 0)
        out.push(
          `**Not the same load for every server** (the comparison is void): ${differences.join("; ")}.`,
          "",
        );
      out.push(
        "| server | sustained deliveries/s | vs plain-grpc-js | vs grpc-js-rooms | vs seed-go | p50 / p99 / max ms | loop max ms | GC ms (count) | µs/delivery | server CPU % | server / generator CPU % at the step that failed | repeated steps | load avg |",
      );
      out.push("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
      for (const server of unique(runs.map((r) => r.server))) {
        const mine = runs.filter((r) => r.server === server);
        const measured = mine.filter((r) => r.steps.length > 0);
        const errors = unique(mine.flatMap((r) => (r.error === undefined ? [] : [r.error])));
        if (measured.length === 0) {
          out.push(`| ${server} | failed: ${errors.join("; ")} ||||||||||||`);
          continue;
        }
        const sustained = sustainedOf(server);
        const refs = measured.map(referenceStep);
        const star = refs.some((s) => !s.sustained) ? "*" : "";
        const m = (f: (s: StepResult) => number | undefined) =>
          median(refs.map((s) => f(s) ?? Number.NaN));
        out.push(
          `| ${server} | ${int(sustained)}${range(measured.map((r) => r.sustained))}${topStepNote(measured)} | ` +
            `${ratio(sustained, sustainedOf("plain-grpc-js"))} | ${ratio(sustained, sustainedOf("grpc-js-rooms"))} | ` +
            `${ratio(sustained, sustainedOf("seed-go"))} | ` +
            `${ms(m((s) => s.p50))} / ${ms(m((s) => s.p99))} / ${ms(m((s) => s.max))}${star} | ` +
            `${ms(m((s) => s.loopMaxMs))} | ${ms(m((s) => s.gcMs))} (${int(m((s) => s.gcCount))}) | ` +
            `${us(m((s) => s.usPerDelivery))} | ${int(m((s) => s.serverCpuPercent))} | ${atLimit(measured)} | ${repeated(measured)} | ` +
            `${loads(mine.map((r) => r.load))} |`,
        );
        if (errors.length > 0)
          out.push(`| ${server} (failed runs) | ${errors.join("; ")} ||||||||||||`);
      }
      out.push("");
    }
    // How the cost per delivery grows with the room.
    if (counts.length > 1) {
      out.push(
        "### Cost per delivery by room size",
        "",
        "Server CPU µs per delivery at each repetition's highest sustained step (median; `*`: none sustained, lowest step).",
        "",
        `| server | ${counts.map((c) => `µs @ ${int(c)}`).join(" | ")} | ${int(counts.at(-1) ?? 0)} vs ${int(counts[0] ?? 0)} |`,
        `|---|${counts.map(() => "---|").join("")}---|`,
      );
      for (const server of unique(results.fanout.map((r) => r.server))) {
        const costs = counts.map((c) => costPerDelivery(results, server, c));
        out.push(
          `| ${server} | ${costs.map((c) => `${us(c.value)}${c.star}`).join(" | ")} | ${ratio(costs.at(-1)?.value ?? Number.NaN, costs[0]?.value ?? Number.NaN)} |`,
        );
      }
      out.push("");
      const offered = commonOffered(results, counts);
      if (offered !== undefined) {
        out.push(
          `The same at one offered load, ${int(offered)} deliveries/s (the highest Switchboard was measured at in every room size; median of the runs' first tries), so that the ratio compares room sizes and not rates: the highest sustained step above is at a different rate per room size, and a higher rate batches more messages per write.`,
          "",
          `| server | ${counts.map((c) => `µs @ ${int(c)}`).join(" | ")} | ${int(counts.at(-1) ?? 0)} vs ${int(counts[0] ?? 0)} |`,
          `|---|${counts.map(() => "---|").join("")}---|`,
        );
        for (const server of unique(results.fanout.map((r) => r.server))) {
          const costs = counts.map((c) => costAtOffered(results, server, c, offered));
          out.push(
            `| ${server} | ${costs.map((c) => us(c)).join(" | ")} | ${ratio(costs.at(-1) ?? Number.NaN, costs[0] ?? Number.NaN)} |`,
          );
        }
        out.push("");
      }
    }
    // Every step of every run: nothing is left out, tries included.
    out.push(
      "<details><summary>Every step of every run</summary>",
      "",
      "Latency over every delivery to every subscriber. Loop max / GC: the server's (Node servers: a probe preloaded " +
        "into each, perf_hooks.monitorEventLoopDelay and PerformanceObserver('gc'); Switchboard's own /metrics in the " +
        "next column, where prom-client counts one GC per observer batch). Server CPU % and generator CPU % are over the " +
        "step and its drain; a generator near 100% means the load generator, not the server, was the limit.",
      "",
      "| subscribers | server | rep | try | msgs/s | offered/s | delivered / expected | subscribers missing some | p50 / p99 / max ms | loop max / p99 ms | GC ms / count / longest ms | own /metrics: loop max ms, GC ms / count | server CPU % | µs/delivery | generator CPU % (cores, threads) | generator ms/message | sustained |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const r of results.fanout) {
      for (const s of r.steps) {
        const tryCell = s.attempt ?? (s.retried ? "2 (1st not recorded)" : "1");
        out.push(
          `| ${int(r.subscribers)} | ${r.server} | ${r.repetition} | ${tryCell} | ${int(s.rate)} | ${int(s.offered)} | ` +
            `${int(s.delivered)} / ${int(s.expected)} | ${s.subscribersMissing ?? "—"} | ` +
            `${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)} | ${ms(s.loopMaxMs)} / ${ms(s.loopP99Ms)} | ` +
            `${ms(s.gcMs)} / ${s.gcCount ?? "—"} / ${ms(s.gcMaxPauseMs)} | ` +
            `${s.own ? `${ms(s.own.loopMaxMs)}, ${ms(s.own.gcMs)} / ${s.own.gcCount}` : "—"} | ` +
            `${int(s.serverCpuPercent)} | ${us(s.usPerDelivery)} | ${generatorCell(s)} | ${ms(s.generatorMsPerMessage)} | ` +
            `${s.sustained ? "yes" : `**no**${whyNot(s) === "" ? "" : ` (${whyNot(s)})`}`} |`,
        );
      }
    }
    out.push("", "</details>", "");

    const sbAt = (c: number) =>
      median(
        results.fanout
          .filter((r) => r.server === "switchboard" && r.subscribers === c && r.steps.length > 0)
          .map((r) => r.sustained),
      );
    const peerAt = (server: string, c: number) =>
      median(
        results.fanout
          .filter((r) => r.server === server && r.subscribers === c && r.steps.length > 0)
          .map((r) => r.sustained),
      );
    if (counts.includes(1000)) {
      const sb = sbAt(1000);
      const plain = peerAt("plain-grpc-js", 1000);
      const refs = results.fanout
        .filter((r) => r.server === "switchboard" && r.subscribers === 1000 && r.steps.length > 0)
        .map(referenceStep);
      const loopMax = median(refs.map((s) => s.loopMaxMs ?? Number.NaN));
      targets.push({
        name: "Fan-out at 1,000 subscribers on one core ≥ 1.0× plain grpc-js, p99 ≤ 100 ms on every subscriber, no event-loop stall over 50 ms at that rate",
        measured: `${int(sb)} vs ${int(plain)} deliveries/s = ${ratio(sb, plain)}; loop max ${ms(loopMax)} ms at that step`,
        met: known(sb, plain, loopMax) ? sb > 0 && sb >= plain && loopMax <= 50 : undefined,
      });
      const seed = peerAt("seed-go", 1000);
      targets.push({
        name: "Fan-out at 1,000 subscribers ≥ 0.5× seed grpc-go (goal; moonshot ≥ 1.0×)",
        measured: `${int(sb)} vs ${int(seed)} deliveries/s = ${ratio(sb, seed)}`,
        met: known(sb, seed) ? sb >= 0.5 * seed : undefined,
      });
    }
    for (const c of counts.filter((c) => c >= 5000)) {
      const sb = sbAt(c);
      const seed = peerAt("seed-go", c);
      targets.push({
        name: `Fan-out at ${int(c)} subscribers sustained, ≥ 0.5× seed grpc-go`,
        measured: `${int(sb)} vs ${int(seed)} deliveries/s = ${ratio(sb, seed)}`,
        met: known(sb, seed) ? sb > 0 && sb >= 0.5 * seed : undefined,
      });
    }
    if (counts.includes(1000) && counts.includes(10000)) {
      // Like for like: both room sizes at the same offered load (deliveries/s).
      const offered = commonOffered(results, [1000, 10000]);
      const at1k =
        offered === undefined ? Number.NaN : costAtOffered(results, "switchboard", 1000, offered);
      const at10k =
        offered === undefined ? Number.NaN : costAtOffered(results, "switchboard", 10000, offered);
      const top1k = costPerDelivery(results, "switchboard", 1000);
      const top10k = costPerDelivery(results, "switchboard", 10000);
      targets.push({
        name: "Cost per delivery at 10,000 subscribers within 1.5× of the cost at 1,000",
        measured:
          `${us(at10k)} vs ${us(at1k)} µs = ${ratio(at10k, at1k)} at the same ${int(offered ?? Number.NaN)} deliveries/s ` +
          `(at each size's highest sustained step: ${us(top10k.value)}${top10k.star} vs ${us(top1k.value)}${top1k.star} µs, different rates)`,
        met: known(at1k, at10k) ? at10k <= 1.5 * at1k : undefined,
      });
    }
  }

  // 2. Unary
  if (results.unary.length > 0) {
    out.push(
      "## 2. Unary calls: SendMessage, Health.Check",
      "",
      ...measuredAt(results, "unary"),
      ...notInRun(results),
    );
    out.push(
      `Requests/s: h2load ${UNARY_LOAD.h2} (10 connections × 10 streams) over HTTP/2, h2load ${UNARY_LOAD.h1} (50 connections, one request at a time each) over HTTP/1.1, successful answers only; h2load pinned to core 1. ` +
        'grpc-health-h2 is grpc.health.v1.Health/Check of the whole server (service ""). ' +
        "Latency: a client-side histogram, with one call in flight (serial) and under load (16 in flight, on 4 HTTP/2 connections or 16 HTTP/1.1 connections). " +
        "Bad answers: calls of the latency client that were not successes (it reads grpc-status; h2load does not): a row with any means nothing. " +
        "Ratios: against plain-grpc-js and grpc-js-rooms over gRPC, the same method; Connect JSON over HTTP/1.1 against the plain Fastify JSON route.",
      "",
    );
    out.push(
      "| server | protocol | requests/s | vs plain-grpc-js (h1: vs fastify-json) | vs grpc-js-rooms | serial p50 / p99 / max ms | loaded p50 / p99 ms | bad answers | failed (load tool) | load avg |",
    );
    out.push("|---|---|---|---|---|---|---|---|---|---|");
    const rpsOf = (server: string, protocol: string) =>
      median(
        results.unary
          .filter((r) => r.server === server && r.protocol === protocol)
          .map((r) => r.rps),
      );
    for (const key of unique(results.unary.map((r) => `${r.server}|${r.protocol}`))) {
      const [server, protocol] = key.split("|") as [string, string];
      const mine = results.unary.filter((r) => r.server === server && r.protocol === protocol);
      const rps = median(mine.map((r) => r.rps));
      const h1 = protocol === "connect-json-h1";
      const gRpcMethod = protocol === "grpc-health-h2" ? protocol : "grpc-h2";
      const base = h1 ? rpsOf("fastify-json", protocol) : rpsOf("plain-grpc-js", gRpcMethod);
      const rooms = h1 ? Number.NaN : rpsOf("grpc-js-rooms", gRpcMethod);
      const errors = unique(mine.flatMap((r) => (r.error === undefined ? [] : [r.error])));
      const m = (f: (r: (typeof mine)[number]) => number) => ms(median(mine.map(f)));
      out.push(
        `| ${server} | ${protocol} | ${int(rps)}${range(mine.map((r) => r.rps))} | ${ratio(rps, base)} | ${ratio(rps, rooms)} | ` +
          `${m((r) => r.serial.p50)} / ${m((r) => r.serial.p99)} / ${m((r) => r.serial.max)} | ` +
          `${m((r) => r.loaded.p50)} / ${m((r) => r.loaded.p99)} | ${mine.reduce((a, r) => a + r.badAnswers, 0)} | ` +
          `${mine.reduce((a, r) => a + r.failed, 0)} | ${loads(mine.map((r) => r.load))} |`,
      );
      if (errors.length > 0)
        out.push(
          `| ${server} | ${protocol}: failed in ${mine.filter((r) => r.error !== undefined).length} of ${mine.length} repetitions: ${errors.join("; ")} ||||||||`,
        );
    }
    out.push("");
    const sbGrpc = rpsOf("switchboard", "grpc-h2");
    const plain = rpsOf("plain-grpc-js", "grpc-h2");
    targets.push({
      name: "Unary SendMessage over gRPC ≥ 1.0× plain grpc-js",
      measured: `${int(sbGrpc)} vs ${int(plain)} req/s = ${ratio(sbGrpc, plain)}`,
      met: known(sbGrpc, plain) ? sbGrpc >= plain : undefined,
    });
    const sbJson = rpsOf("switchboard", "connect-json-h1");
    const fj = rpsOf("fastify-json", "connect-json-h1");
    targets.push({
      name: "Connect JSON over HTTP/1.1 ≥ 0.5× a plain Fastify JSON route",
      measured: `${int(sbJson)} vs ${int(fj)} req/s = ${ratio(sbJson, fj)}`,
      met: known(sbJson, fj) ? sbJson >= 0.5 * fj : undefined,
    });
  }

  // 3. Idle streams
  if (results.memory.length > 0) {
    out.push(
      "## 3. Idle subscriber streams: memory per stream, time to open",
      "",
      ...measuredAt(results, "memory"),
      ...notInRun(results),
    );
    out.push(
      "Each count in a fresh server process: (VmRSS with N idle SubscribeMessages streams − VmRSS of the same process before any) / N, " +
        "100 streams per HTTP/2 connection, one user; and the seconds from the first stream's request to the last one's welcome. " +
        "A cell reads KiB per stream (seconds to open them); `a/b opened` when the server did not welcome every stream. " +
        "All streams of a count are requested at once by a raw h2c client (bench/README.md, scenario 3).",
      "",
    );
    const counts = unique(results.memory.flatMap((r) => r.points.map((p) => p.streams))).sort(
      (a, b) => a - b,
    );
    const last = counts.at(-1) ?? 0;
    out.push(
      `| server | baseline RSS MiB | ${counts.map((c) => `@ ${int(c)}: KiB/stream (open s)`).join(" | ")} | vs plain-grpc-js @ ${int(last)} | vs grpc-js-rooms | vs seed-go | load avg |`,
    );
    out.push(`|---|---|${counts.map(() => "---|").join("")}---|---|---|---|`);
    const pointsOf = (server: string, count: number) =>
      results.memory
        .filter((r) => r.server === server)
        .flatMap((r) => r.points.filter((p) => p.streams === count));
    const perStream = (server: string, count: number) =>
      median(
        pointsOf(server, count)
          .filter((p) => p.error === undefined)
          .map((p) => p.bytesPerStream / 1024),
      );
    for (const server of unique(results.memory.map((r) => r.server))) {
      const mine = results.memory.filter((r) => r.server === server);
      const cells = counts.map((c) => {
        const points = pointsOf(server, c);
        const failed = points.filter((p) => p.error !== undefined);
        const kib = perStream(server, c);
        const open = median(points.map((p) => p.openSeconds ?? Number.NaN));
        const note =
          failed.length === 0
            ? ""
            : ` ${failed.map((p) => (p.opened === undefined ? "failed" : `${int(p.opened)}/${int(c)} opened`)).join(", ")}`;
        return `${missing(kib) ? "—" : kib.toFixed(1)}${missing(open) ? "" : ` (${open.toFixed(1)} s)`}${note}`;
      });
      const kib = perStream(server, last);
      out.push(
        `| ${server} | ${(median(mine.map((r) => r.baselineRss)) / 2 ** 20).toFixed(1)} | ${cells.join(" | ")} | ` +
          `${ratio(kib, perStream("plain-grpc-js", last))} | ${ratio(kib, perStream("grpc-js-rooms", last))} | ` +
          `${ratio(kib, perStream("seed-go", last))} | ${loads(mine.map((r) => r.load))} |`,
      );
    }
    out.push("");
    // Live heap per stream, where the server's heap could be read (Node servers).
    const heapPerStream = (server: string, count: number) =>
      pointsOf(server, count)
        .filter((p) => p.error === undefined && p.heapBytesPerStream !== undefined)
        .map((p) => (p.heapBytesPerStream as number) / 1024);
    const heapServers = unique(results.memory.map((r) => r.server)).filter((server) =>
      counts.some((c) => heapPerStream(server, c).length > 0),
    );
    if (heapServers.length > 0) {
      out.push(
        "Live heap per idle stream: (V8 heap used with the streams − before any) / N, each read after two forced full " +
          "garbage collections (the probe preloaded into every Node server; read after the RSS above). KiB per stream, " +
          "median (range). seed-go: a Go heap cannot be read from outside.",
        "",
        `| server | ${counts.map((c) => `@ ${int(c)}: KiB/stream`).join(" | ")} | vs plain-grpc-js @ ${int(last)} |`,
        `|---|${counts.map(() => "---|").join("")}---|`,
      );
      for (const server of heapServers) {
        const cells = counts.map((c) => {
          const v = heapPerStream(server, c);
          if (v.length === 0) return "—";
          const lo = Math.min(...v);
          const hi = Math.max(...v);
          return `${median(v).toFixed(1)}${v.length > 1 ? ` (${lo.toFixed(1)}–${hi.toFixed(1)})` : ""}`;
        });
        out.push(
          `| ${server} | ${cells.join(" | ")} | ${ratio(median(heapPerStream(server, last)), median(heapPerStream("plain-grpc-js", last)))} |`,
        );
      }
      out.push("");
    }
    // Every burst: what the client saw closed, the server's close reasons and /metrics meanwhile.
    const byKind = (m: Record<string, number> | undefined) =>
      m === undefined
        ? "—"
        : Object.keys(m).length === 0
          ? "none"
          : Object.entries(m)
              .map(([k, v]) => `${k} ${v}`)
              .join(", ");
    out.push(
      "<details><summary>Every burst of every run</summary>",
      "",
      "All streams of a point are requested at once (each connection writes its preface and its 100 requests when it connects). " +
        "Connections closed: as the client saw them; the server's reasons from its /metrics (Switchboard). " +
        "/metrics during the burst: scraped every 500 ms from the first request until the burst settled: every stream welcomed, then 1 s quiet (answered/asked, longest, median).",
      "",
      "| server | rep | streams | opened | open s | KiB/stream | connections closed | server's close reasons | /metrics during the burst | load avg |",
      "|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const run of results.memory) {
      for (const p of run.points) {
        const m = p.metricsDuringBurst;
        out.push(
          `| ${run.server} | ${run.repetition} | ${int(p.streams)} | ${p.opened === undefined ? "—" : int(p.opened)} | ` +
            `${missing(p.openSeconds) ? "—" : (p.openSeconds as number).toFixed(1)} | ${missing(p.bytesPerStream) ? "—" : (p.bytesPerStream / 1024).toFixed(1)} | ` +
            `${byKind(p.connectionsClosed)} | ${byKind(p.serverClosed)} | ` +
            `${m === undefined ? "—" : `${m.answered}/${m.scrapes}, ${Math.round(m.maxMs)} ms, ${Math.round(m.p50Ms)} ms`} | ${run.load} |`,
        );
      }
    }
    out.push("", "</details>", "");
    const sb = perStream("switchboard", last);
    const plain = perStream("plain-grpc-js", last);
    targets.push({
      name: "Memory per idle stream ≤ 1.0× plain grpc-js (moonshot: ≤ seed grpc-go)",
      measured: `${missing(sb) ? "—" : sb.toFixed(1)} vs ${missing(plain) ? "—" : plain.toFixed(1)} KiB/stream at ${int(last)} streams = ${ratio(sb, plain)}`,
      met: known(sb, plain) ? sb <= plain : undefined,
    });
    const hundredK = pointsOf("switchboard", 100_000);
    targets.push({
      name: "100,000 idle streams fit in one Switchboard process",
      measured:
        hundredK.length === 0
          ? "not measured (no 100,000 point in this run)"
          : hundredK
              .map(
                (p) =>
                  `${int(p.opened ?? Number.NaN)} opened in ${missing(p.openSeconds) ? "—" : p.openSeconds.toFixed(1)} s, RSS ${(p.rss / 2 ** 30).toFixed(2)} GiB`,
              )
              .join("; "),
      met:
        hundredK.length === 0
          ? undefined
          : hundredK.every((p) => p.error === undefined && p.opened === 100_000),
    });
  }

  // 4. Slow consumer
  if (results.slowConsumer.length > 0) {
    out.push("## 4. A slow consumer", "", ...measuredAt(results, "slow"));
    out.push(
      "10 subscribers read normally, one stops reading (paused, 64 KiB window, own connection); 400 messages/s published. " +
        "Flat means the last seconds look like the first.",
      "",
    );
    out.push(
      "| server | others' p99 ms, first 3 s → last 3 s | RSS MiB, first → last second | slow one ended with | seen after s (it reads again at the end) | load avg |",
    );
    out.push("|---|---|---|---|---|---|");
    for (const server of unique(results.slowConsumer.map((r) => r.server))) {
      const mine = results.slowConsumer.filter((r) => r.server === server);
      const first = median(mine.map((r) => median(r.p99ByWindow.slice(0, 3))));
      const lastP = median(mine.map((r) => median(r.p99ByWindow.slice(-3))));
      const rss0 = median(mine.map((r) => r.rssByWindow[0] ?? Number.NaN)) / 2 ** 20;
      const rss1 = median(mine.map((r) => r.rssByWindow.at(-1) ?? Number.NaN)) / 2 ** 20;
      const statuses = unique(
        mine.map((r) => (r.slowStatus === "8" ? "8 RESOURCE_EXHAUSTED" : r.slowStatus)),
      ).join(", ");
      out.push(
        `| ${server} | ${ms(first)} → ${ms(lastP)} | ${rss0.toFixed(1)} → ${rss1.toFixed(1)} | ${statuses} | ${ms(median(mine.map((r) => r.slowEndedAfterS)))} | ${loads(mine.map((r) => r.load))} |`,
      );
    }
    out.push("");
  }

  // 5. One stream's throughput
  if (results.streamThroughput.length > 0) {
    out.push("## 5. One stream's throughput", "", ...measuredAt(results, "stream"));
    out.push(
      "| server | RPC | messages/s | vs plain-grpc-js | vs grpc-js-rooms | grpc-status | load avg |",
      "|---|---|---|---|---|---|---|",
    );
    const mps = (server: string) =>
      median(
        results.streamThroughput.filter((r) => r.server === server).map((r) => r.messagesPerSecond),
      );
    for (const server of unique(results.streamThroughput.map((r) => r.server))) {
      const mine = results.streamThroughput.filter((r) => r.server === server);
      out.push(
        `| ${server} | UploadMessages | ${int(mps(server))}${range(mine.map((r) => r.messagesPerSecond))} | ${ratio(mps(server), mps("plain-grpc-js"))} | ${ratio(mps(server), mps("grpc-js-rooms"))} | ${unique(mine.map((r) => r.status)).join(", ")} | ${loads(mine.map((r) => r.load))} |`,
      );
    }
    out.push("");
  }

  const whole = results.wholeMachine ?? [];
  if (whole.length > 0) {
    out.push(
      "## 6. The whole machine (fan-out at 1,000 subscribers, every process on both cores)",
      "",
      ...measuredAt(results, "whole"),
      "Switchboard uses the second core the only way it can, with WORKERS=2 (node:cluster): on a Redis the scenario " +
        "starts (workers share rooms through the store), and on SQLite (issue 20; a server that refuses the " +
        "configuration is a failed row with its own message); seed-go with GOMAXPROCS=2. Redis and the load generator " +
        "(its subscriber threads on every core) share the same cores. CPU time is the server's whole process tree " +
        "(primary and workers; Redis not included). Loop and GC figures are the primary's only, so they are left out. " +
        "Sustained as in section 1.",
      "",
      "| server | sustained deliveries/s | vs seed-go GOMAXPROCS=2 | p50 / p99 / max ms | µs/delivery | server CPU % | generator CPU % at the step that failed | repeated steps | load avg |",
      "|---|---|---|---|---|---|---|---|---|",
    );
    const sustainedOf = (server: string) =>
      median(
        whole.filter((r) => r.server === server && r.steps.length > 0).map((r) => r.sustained),
      );
    const seedName = "seed-go GOMAXPROCS=2";
    for (const server of unique(whole.map((r) => r.server))) {
      const mine = whole.filter((r) => r.server === server);
      const measured = mine.filter((r) => r.steps.length > 0);
      const errors = unique(mine.flatMap((r) => (r.error === undefined ? [] : [r.error])));
      if (measured.length === 0) {
        out.push(`| ${server} | failed: ${errors.join("; ")} ||||||||`);
        continue;
      }
      const refs = measured.map(referenceStep);
      const star = refs.some((s) => !s.sustained) ? "*" : "";
      const m = (f: (s: StepResult) => number | undefined) =>
        median(refs.map((s) => f(s) ?? Number.NaN));
      const failedStep = measured.map((r) => r.steps.find((s) => !s.sustained));
      const generator = median(failedStep.map((s) => s?.generatorCpuPercent ?? Number.NaN));
      const sustained = sustainedOf(server);
      out.push(
        `| ${server} | ${int(sustained)}${range(measured.map((r) => r.sustained))}${topStepNote(measured)} | ` +
          `${ratio(sustained, sustainedOf(seedName))} | ${ms(m((s) => s.p50))} / ${ms(m((s) => s.p99))} / ${ms(m((s) => s.max))}${star} | ` +
          `${us(m((s) => s.usPerDelivery))} | ${int(m((s) => s.serverCpuPercent))} | ${int(generator)} | ${repeated(measured)} | ` +
          `${loads(mine.map((r) => r.load))} |`,
      );
      if (errors.length > 0) out.push(`| ${server} (failed runs) | ${errors.join("; ")} ||||||||`);
    }
    out.push(
      "",
      "<details><summary>Every step of every run</summary>",
      "",
      "| server | rep | try | msgs/s | offered/s | delivered / expected | p50 / p99 / max ms | server CPU % | µs/delivery | generator CPU % (cores, threads) | generator ms/message | sustained |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const r of whole)
      for (const s of r.steps)
        out.push(
          `| ${r.server} | ${r.repetition} | ${s.attempt ?? 1} | ${int(s.rate)} | ${int(s.offered)} | ` +
            `${int(s.delivered)} / ${int(s.expected)} | ${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)} | ` +
            `${int(s.serverCpuPercent)} | ${us(s.usPerDelivery)} | ${generatorCell(s)} | ${ms(s.generatorMsPerMessage)} | ` +
            `${s.sustained ? "yes" : `**no**${whyNot(s) === "" ? "" : ` (${whyNot(s)})`}`} |`,
        );
    out.push("", "</details>", "");
    const sb = sustainedOf("switchboard WORKERS=2 (Redis)");
    const seed = sustainedOf(seedName);
    targets.push({
      name: "Whole machine: WORKERS=2 against seed grpc-go with GOMAXPROCS=2, the generator sharing both cores (ratio reported; the issue sets no threshold)",
      measured: `${int(sb)} vs ${int(seed)} deliveries/s = ${ratio(sb, seed)}`,
      met: undefined,
    });
  } else {
    targets.push({
      name: "Whole machine: WORKERS=2 against seed grpc-go with GOMAXPROCS=2, the generator sharing both cores",
      measured: "not in this run (`--scenarios whole`)",
      met: undefined,
    });
  }
  const crossNode = results.crossNode ?? [];
  if (crossNode.length > 0) renderCrossNode(out, results, crossNode, targets);
  else
    targets.push({
      name: "Issue 14: cross-node fan-out, 3 nodes on a Redis Cluster against 3 nodes on one Redis",
      measured: "not in this run (`--scenarios crossnode`)",
      met: undefined,
    });
  renderCost(out, results);
  renderWakeUp(out, results);
  out.push(
    "## Targets (issue 19)",
    "",
    `Medians of ${results.repetitions} repetition(s)${results.repetitions < 3 ? " (the issue asks for 3)" : ""}, with min–max ranges; ` +
      "ratios are of the medians, against the peers measured in the same run. Memory, unary and the fan-out tail: the " +
      "server pinned to core 0 and the load to core 1. A row with failed runs, bad answers or a missed delivery is " +
      'not met, whatever its ratio; "undecided": the load generator was the limit.',
    "",
    ...targetsTable(issue19Targets(results)),
    "",
    "## Targets (issue 20)",
    "",
    "Every process on every core: Switchboard WORKERS=2 on SQLite against the same on Redis and seed grpc-go " +
      `GOMAXPROCS=2 (section 6), and the cross-worker wake-up (section 9: "flat" read as ≤ ${WAKE_FLAT}×).`,
    "",
    ...targetsTable(issue20Targets(results)),
    "",
  );
  // Measured apart from the suite (its own interleaved run: bench/results/tracing.json).
  if (tracing !== undefined) out.push(...renderTracing(tracing));
  renderFailures(out, results);
  out.push(
    "## Targets (issue 12)",
    "",
    `Medians of ${results.repetitions} repetition(s)${results.repetitions < 3 ? " (the issue asks for at least 3)" : ""}.`,
    "",
    "| target | measured | met |",
    "|---|---|---|",
  );
  for (const t of targets)
    out.push(
      `| ${t.name} | ${t.measured} | ${t.met === undefined ? (t.measured.includes("=") ? "reported" : "not measured") : t.met ? "yes" : "**no**"} |`,
    );
  out.push("");
  if (charts.length > 0) {
    out.push("## Charts", "");
    for (const c of charts) out.push(`![${c}](${c})`, "");
  }
  return out.join("\n");
}

/** Section 7: the cross-node fan-out of issue 14, one Redis against the cluster. */
function renderCrossNode(
  out: string[],
  results: Results,
  runs: CrossNodeRun[],
  targets: Target[],
): void {
  const first = runs.find((r) => r.rooms.length > 0) ?? runs[0];
  const perNode = first?.rooms.reduce(
    (acc, r) => acc.map((n, i) => n + (r.subscribersPerNode[i] ?? 0)),
    new Array<number>(first.nodes).fill(0),
  );
  out.push(
    `## 7. Cross-node fan-out (${first?.nodes ?? 3} nodes: one Redis against a Redis Cluster)`,
    "",
    ...measuredAt(results, "crossnode"),
    `${first?.nodes ?? 3} Switchboard nodes, each its own process, share one \`redis-server\` (\`STORE=redis://…\`) or a ` +
      "Redis Cluster of 3 masters and 3 replicas (`STORE=redis-cluster://…`), both started fresh for each run. " +
      `${int(first?.subscribers)} subscribers (${(perNode ?? []).map(int).join(" / ")} per node, 100 streams per HTTP/2 connection at most) ` +
      `in ${first?.rooms.length ?? 3} rooms whose keys hash to slots of different cluster masters; each room's publisher sends ` +
      "through one node and its subscribers are on the two others, so every delivery crosses nodes through Redis " +
      "(sharded pub/sub, SPUBLISH/SSUBSCRIBE, on both stores). Open-loop stepped rate as in section 1, the same rate for " +
      "every room; sustained as there, with latency over every delivery to every subscriber. Nothing is pinned: Redis, " +
      "the nodes and the load generator share both cores. Node CPU is summed over the 3 nodes (% of one core), Redis " +
      "CPU over every redis-server process (1 or 6); loop max is the worst node's. On one machine the cluster's six " +
      "Redis processes share the same cores as everything else: the ratio shows what the cluster costs the nodes here, " +
      "not how far a cluster of several machines scales.",
    "",
  );
  if (first !== undefined && first.rooms.length > 0)
    out.push(
      `Rooms: ${first.rooms
        .map(
          (r) =>
            `\`${r.room}\` (slot ${r.slot}; publisher on node ${r.publishVia}, subscribers ${r.subscribersPerNode.join(" / ")})`,
        )
        .join(", ")}.`,
      "",
    );
  const sustainedOf = (setup: string) =>
    median(runs.filter((r) => r.setup === setup && r.steps.length > 0).map((r) => r.sustained));
  const base = sustainedOf("redis");
  out.push(
    "| setup | sustained deliveries/s | vs one Redis | p50 / p99 / max ms | nodes CPU % (sum) | node µs/delivery | Redis CPU % | loop max ms (worst node) | generator CPU % at the step that failed | repeated steps | load avg |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  );
  for (const setup of unique(runs.map((r) => r.setup))) {
    const mine = runs.filter((r) => r.setup === setup);
    const name = mine[0]?.server ?? setup;
    const measured = mine.filter((r) => r.steps.length > 0);
    const errors = unique(mine.flatMap((r) => (r.error === undefined ? [] : [r.error])));
    if (measured.length === 0) {
      out.push(`| ${name} | failed: ${errors.join("; ")} ||||||||||`);
      continue;
    }
    const refs = measured.map(referenceStep) as CrossNodeRun["steps"];
    const star = refs.some((s) => !s.sustained) ? "*" : "";
    const m = (f: (s: CrossNodeRun["steps"][number]) => number | undefined) =>
      median(refs.map((s) => f(s) ?? Number.NaN));
    const failedStep = measured.map((r) => r.steps.find((s) => !s.sustained));
    const generator = median(failedStep.map((s) => s?.generatorCpuPercent ?? Number.NaN));
    const sustained = sustainedOf(setup);
    out.push(
      `| ${name} | ${int(sustained)}${range(measured.map((r) => r.sustained))}${topStepNote(measured)} | ` +
        `${ratio(sustained, base)} | ${ms(m((s) => s.p50))} / ${ms(m((s) => s.p99))} / ${ms(m((s) => s.max))}${star} | ` +
        `${int(m((s) => s.serverCpuPercent))} | ${us(m((s) => s.usPerDelivery))} | ${int(m((s) => s.redisCpuPercent))} | ` +
        `${ms(m((s) => s.loopMaxMs))} | ${int(generator)} | ${repeated(measured)} | ${loads(mine.map((r) => r.load))} |`,
    );
    if (errors.length > 0) out.push(`| ${name} (failed runs) | ${errors.join("; ")} ||||||||||`);
  }
  out.push(
    "",
    "`*`: no step was sustained; the figures are the lowest step's. The other figures are those of each " +
      "repetition's highest sustained step (medians).",
    "",
    "<details><summary>Every step of every run</summary>",
    "",
    "| setup | rep | try | msgs/s per room | offered/s | delivered / expected | subscribers missing some | p50 / p99 / max ms | CPU % per node | node µs/delivery | Redis CPU % | loop max / p99 ms (worst node) | GC ms / count (all nodes) | generator CPU % | sustained |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  );
  for (const r of runs)
    for (const s of r.steps)
      out.push(
        `| ${r.setup} | ${r.repetition} | ${s.attempt ?? 1} | ${int(s.rate)} | ${int(s.offered)} | ` +
          `${int(s.delivered)} / ${int(s.expected)} | ${s.subscribersMissing ?? "—"} | ` +
          `${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)} | ${(s.nodeCpuPercent ?? []).map(int).join(" / ") || "—"} | ` +
          `${us(s.usPerDelivery)} | ${int(s.redisCpuPercent)} | ${ms(s.loopMaxMs)} / ${ms(s.loopP99Ms)} | ` +
          `${ms(s.gcMs)} / ${s.gcCount ?? "—"} | ${int(s.generatorCpuPercent)} | ${s.sustained ? "yes" : "**no**"} |`,
      );
  out.push("", "</details>", "");
  const cluster = sustainedOf("redis-cluster");
  const p99Of = (setup: string) =>
    median(
      runs.filter((r) => r.setup === setup && r.steps.length > 0).map((r) => referenceStep(r).p99),
    );
  targets.push({
    name: "Issue 14: cross-node fan-out, 3 nodes on a Redis Cluster against 3 nodes on one Redis (ratio reported; the issue sets no threshold)",
    measured:
      `${int(cluster)} vs ${int(base)} deliveries/s = ${ratio(cluster, base)}; ` +
      `p99 ${ms(p99Of("redis-cluster"))} vs ${ms(p99Of("redis"))} ms`,
    met: undefined,
  });
}

/** Section 8: server CPU per fan-out delivery at a fixed rate (scenarios/fanout-cost.ts). */
function renderCost(out: string[], results: Results): void {
  const runs = results.fanoutCost ?? [];
  if (runs.length === 0) return;
  out.push(
    "## 8. Fan-out: server CPU per delivery at a fixed rate",
    "",
    ...measuredAt(results, "cost"),
    ...notInRun(results),
    `Every server the same work: ${int(runs[0]?.rate)} deliveries/s offered (rate / subscribers messages/s, one room, one ` +
      "user, 100 streams per HTTP/2 connection), until every subscriber has every message; server CPU seconds over the " +
      "window ÷ deliveries (/proc/<pid>/stat, every thread), and the same less the server's idle CPU over as long (net). " +
      "Server pinned to core 0, load to core 1. A run in which a delivery was missed or a send failed is not counted.",
    "",
    "| subscribers | server | µs/delivery | net of idle | vs plain-grpc-js | vs seed-go | idle CPU % | p99 ms | generator CPU % | failed runs | load avg |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  );
  const counts = unique(runs.map((r) => r.subscribers)).sort((a, b) => a - b);
  for (const count of counts) {
    const ok = (server: string) =>
      runs.filter((r) => r.server === server && r.subscribers === count && r.error === undefined);
    const cost = (server: string) => median(ok(server).map((r) => r.usPerDelivery));
    for (const server of unique(runs.filter((r) => r.subscribers === count).map((r) => r.server))) {
      const mine = runs.filter((r) => r.server === server && r.subscribers === count);
      const good = ok(server);
      const failed = mine.filter((r) => r.error !== undefined);
      const spreadOf = (values: number[]) => {
        const v = values.filter((x) => !missing(x));
        return v.length === 0
          ? "—"
          : `${us(median(v))}${v.length > 1 ? ` (${us(Math.min(...v))}–${us(Math.max(...v))})` : ""}`;
      };
      out.push(
        `| ${int(count)} | ${server} | ${spreadOf(good.map((r) => r.usPerDelivery))} | ${spreadOf(good.map((r) => r.netUsPerDelivery))} | ` +
          `${ratio(cost(server), cost("plain-grpc-js"))} | ${ratio(cost(server), cost("seed-go"))} | ` +
          `${us(median(good.map((r) => r.idleCpuPercent ?? Number.NaN)))} | ${ms(median(good.map((r) => r.p99 ?? Number.NaN)))} | ` +
          `${int(median(good.map((r) => r.generatorCpuPercent ?? Number.NaN)))} | ` +
          `${failed.length === 0 ? "0" : `${failed.length}: ${unique(failed.map((r) => r.error as string)).join("; ")}`} | ` +
          `${loads(mine.map((r) => r.load))} |`,
      );
    }
  }
  out.push("");
}

/** Section 9: the cross-worker wake-up cost with the room count (scenarios/wake-up.ts). */
function renderWakeUp(out: string[], results: Results): void {
  const runs = results.wakeUp ?? [];
  if (runs.length === 0) return;
  out.push(
    "## 9. Cross-worker wake-up cost by room count (WORKERS=2)",
    "",
    ...measuredAt(results, "wake"),
    `One room with one subscriber against 1,000 rooms with one subscriber each: the same ${int(runs.find((r) => r.messages !== undefined)?.messages)} ` +
      `messages at ${int(runs[0]?.rate)}/s, each reaching one subscriber, sent in turn to every room through two publisher ` +
      "connections (one per worker: every room gets half its messages through the other worker). Server CPU (every process " +
      "of the tree) per delivery, and net of the idle CPU. Every process on every core.",
    "",
    "| setup | rooms | µs/delivery | net of idle | p99 ms | failed runs | load avg |",
    "|---|---|---|---|---|---|---|",
  );
  for (const setup of unique(runs.map((r) => r.setup))) {
    for (const rooms of unique(runs.map((r) => r.rooms ?? 1)).sort((a, b) => a - b)) {
      const mine = runs.filter((r) => r.setup === setup && (r.rooms ?? 1) === rooms);
      if (mine.length === 0) continue;
      const good = mine.filter((r) => r.error === undefined);
      const failed = mine.filter((r) => r.error !== undefined);
      out.push(
        `| ${setup} | ${int(rooms)} | ${us(median(good.map((r) => r.usPerDelivery)))} | ${us(median(good.map((r) => r.netUsPerDelivery)))} | ` +
          `${ms(median(good.map((r) => r.p99 ?? Number.NaN)))} | ` +
          `${failed.length === 0 ? "0" : `${failed.length} of ${mine.length}: ${unique(failed.map((r) => r.error as string)).join("; ")}`} | ` +
          `${loads(mine.map((r) => r.load))} |`,
      );
    }
  }
  out.push("");
}

/**
 * Every failure of the run in one place: runs that failed (server did not start, streams not
 * opened, a delivery missed), and each fan-out run's failed step with why.
 */
function renderFailures(out: string[], results: Results): void {
  const lines: string[] = [];
  const step = (s: StepResult) =>
    `${int(s.rate)} msgs/s (${int(s.offered)} offered/s), try ${s.attempt ?? 1}: ${whyNot(s)}`;
  for (const [section, runs] of [
    ["fan-out", results.fanout],
    ["whole machine", results.wholeMachine ?? []],
    ["cross-node", results.crossNode ?? []],
  ] as const) {
    for (const r of runs as FanoutRun[]) {
      const where = `${section}, ${r.server}, ${int(r.subscribers)} subscribers, rep ${r.repetition}`;
      if (r.error !== undefined) lines.push(`- ${where}: **run failed**: ${r.error}`);
      for (const s of r.steps.filter((s) => !s.sustained))
        lines.push(`- ${where}: step ${step(s)}`);
    }
  }
  for (const r of results.unary)
    if (r.error !== undefined || r.badAnswers > 0)
      lines.push(
        `- unary, ${r.server} ${r.protocol}, rep ${r.repetition}: ${r.error ?? `${r.badAnswers} bad answers`}`,
      );
  for (const r of results.memory)
    for (const p of r.points)
      if (p.error !== undefined)
        lines.push(
          `- idle streams, ${r.server} @ ${int(p.streams)}, rep ${r.repetition}: ${int(p.opened ?? Number.NaN)} opened: ${p.error}`,
        );
  for (const [section, runs] of [
    ["cost", results.fanoutCost ?? []],
    ["wake-up", results.wakeUp ?? []],
  ] as const)
    for (const r of runs)
      if (r.error !== undefined)
        lines.push(
          `- ${section}, ${r.server}, ${int(r.subscribers)} subscribers${r.rooms !== undefined && r.rooms > 1 ? ` in ${int(r.rooms)} rooms` : ""}, rep ${r.repetition}: ${r.error}`,
        );
  out.push(
    "## Failures",
    "",
    "Every run that failed and every fan-out step that was not sustained (the stepping stops at the first; with " +
      "`--tries` every try is listed), with why. Nothing was retried unless a try number above 1 says so.",
    "",
    ...(lines.length === 0 ? ["None."] : lines),
    "",
  );
}
