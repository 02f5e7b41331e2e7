// bench/results/RESULTS.md from results.json: medians over repetitions, ratios against the
// grpc-js peer (or the plain Fastify route for Connect JSON over HTTP/1.1), and the targets.
import type { Results } from "../lib/results.js";
import { median } from "../lib/stats.js";

const int = (n: number) => (Number.isNaN(n) ? "—" : Math.round(n).toLocaleString("en-US"));
const ms = (n: number) => (Number.isNaN(n) ? "—" : n < 10 ? n.toFixed(2) : n.toFixed(0));
const ratio = (a: number, b: number) =>
  Number.isNaN(a) || Number.isNaN(b) || b === 0 ? "—" : `${(a / b).toFixed(2)}×`;
const range = (values: number[]) =>
  values.length === 0 ? "" : ` (${int(Math.min(...values))}–${int(Math.max(...values))})`;
const unique = <T>(values: T[]) => [...new Set(values)];
const loads = (values: string[]) => unique(values).join("; ");

/** "Measured at …" under a section, when results.json records it. */
const measuredAt = (results: Results, scenario: string) => {
  const at = results.scenarioStartedAt?.[scenario];
  return at === undefined ? [] : [`Measured from ${at}.`, ""];
};

/** The targets of issue 6, each met or not, for the summary. */
interface Target {
  name: string;
  measured: string;
  met: boolean | undefined;
}

export function renderMarkdown(results: Results, charts: string[]): string {
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
  out.push("## Machine", "", "| | |", "|---|---|");
  for (const [k, v] of Object.entries(results.machine)) out.push(`| ${k} | ${v} |`);
  out.push("");

  // 1. Fan-out
  if (results.fanout.length > 0) {
    out.push(
      "## 1. Fan-out (one publisher, N subscribers, open-loop stepped rate)",
      "",
      ...measuredAt(results, "fanout"),
    );
    out.push(
      "Sustained: every message delivered to every subscriber, no failed send, p99 publish-to-delivery ≤ 100 ms. " +
        "The ratio is against the grpc-js peer at the same subscriber count. The p50 / p99 columns are at fixed offered loads " +
        "(deliveries/s); a cell with * is a step that was not sustained, — a step never reached.",
      "",
    );
    for (const subs of unique(results.fanout.map((r) => r.subscribers))) {
      const runs = results.fanout.filter((r) => r.subscribers === subs);
      const fixed = unique(runs.flatMap((r) => r.steps.map((s) => s.offered)))
        .sort((a, b) => a - b)
        .filter((_, i, all) => all.length <= 5 || i % 2 === 0);
      out.push(`### ${subs.toLocaleString("en-US")} subscribers`, "");
      out.push(
        `| server | sustained deliveries/s | vs grpc-js | ${fixed.map((f) => `p50 / p99 ms @ ${int(f)}/s`).join(" | ")} | load avg |`,
      );
      out.push(`|---|---|---|${fixed.map(() => "---|").join("")}---|`);
      const base = median(runs.filter((r) => r.server === "grpc-js").map((r) => r.sustained));
      for (const server of unique(runs.map((r) => r.server))) {
        const mine = runs.filter((r) => r.server === server);
        const sustained = median(mine.map((r) => r.sustained));
        const cells = fixed.map((f) => {
          const steps = mine.flatMap((r) => r.steps.filter((s) => s.offered === f));
          if (steps.length === 0) return "—";
          const star = steps.some((s) => !s.sustained) ? "*" : "";
          return `${ms(median(steps.map((s) => s.p50)))} / ${ms(median(steps.map((s) => s.p99)))}${star}`;
        });
        out.push(
          `| ${server} | ${int(sustained)}${range(mine.map((r) => r.sustained))} | ${ratio(sustained, base)} | ${cells.join(" | ")} | ${loads(mine.map((r) => r.load))} |`,
        );
        if (server === "switchboard" && subs === 1000) {
          targets.push({
            name: "Fan-out at 1,000 subscribers on one core ≥ 1.0× the grpc-js peer, p99 ≤ 100 ms",
            measured: `${int(sustained)} vs ${int(base)} deliveries/s sustained = ${ratio(sustained, base)}`,
            met: Number.isNaN(base) ? undefined : sustained >= base && sustained > 0,
          });
        }
      }
      out.push("");
    }
  }

  // 2. Unary
  if (results.unary.length > 0) {
    out.push("## 2. Unary SendMessage", "", ...measuredAt(results, "unary"));
    out.push(
      "Requests/s: h2load (10 connections × 10 streams) over HTTP/2, autocannon (10 connections) over HTTP/1.1, successful answers only. " +
        "Latency: a client-side histogram, with one call in flight (serial) and under load (16 in flight on 4 HTTP/2 connections, or autocannon's 10). " +
        "Bad answers: calls of the latency client that were not successes (it reads grpc-status; h2load does not). " +
        "The ratio is against the grpc-js peer for gRPC, and against the plain Fastify JSON route for Connect JSON over HTTP/1.1.",
      "",
    );
    out.push(
      "| server | protocol | requests/s | ratio | serial p50 / p99 / max ms | loaded p50 / p99 ms | bad answers | failed (load tool) | load avg |",
    );
    out.push("|---|---|---|---|---|---|---|---|---|");
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
      const base =
        protocol === "connect-json-h1"
          ? rpsOf("fastify-json", protocol)
          : rpsOf("grpc-js", "grpc-h2");
      const m = (f: (r: (typeof mine)[number]) => number) => ms(median(mine.map(f)));
      out.push(
        `| ${server} | ${protocol} | ${int(rps)}${range(mine.map((r) => r.rps))} | ${ratio(rps, base)} | ` +
          `${m((r) => r.serial.p50)} / ${m((r) => r.serial.p99)} / ${m((r) => r.serial.max)} | ` +
          `${m((r) => r.loaded.p50)} / ${m((r) => r.loaded.p99)} | ${mine.reduce((a, r) => a + r.badAnswers, 0)} | ` +
          `${mine.reduce((a, r) => a + r.failed, 0)} | ${loads(mine.map((r) => r.load))} |`,
      );
    }
    out.push("");
    const sbGrpc = rpsOf("switchboard", "grpc-h2");
    const gj = rpsOf("grpc-js", "grpc-h2");
    targets.push({
      name: "Unary SendMessage over gRPC ≥ 0.5× the grpc-js peer",
      measured: `${int(sbGrpc)} vs ${int(gj)} req/s = ${ratio(sbGrpc, gj)}`,
      met: Number.isNaN(sbGrpc) || Number.isNaN(gj) ? undefined : sbGrpc >= 0.5 * gj,
    });
    const sbJson = rpsOf("switchboard", "connect-json-h1");
    const fj = rpsOf("fastify-json", "connect-json-h1");
    targets.push({
      name: "Connect JSON over HTTP/1.1 ≥ 0.5× a plain Fastify JSON route",
      measured: `${int(sbJson)} vs ${int(fj)} req/s = ${ratio(sbJson, fj)}`,
      met: Number.isNaN(sbJson) || Number.isNaN(fj) ? undefined : sbJson >= 0.5 * fj,
    });
  }

  // 3. Memory
  if (results.memory.length > 0) {
    out.push("## 3. Memory per idle subscriber stream", "", ...measuredAt(results, "memory"));
    out.push(
      "(VmRSS with N idle SubscribeMessages streams − VmRSS before any) / N, 100 streams per HTTP/2 connection, one user.",
      "",
    );
    const counts = unique(results.memory.flatMap((r) => r.points.map((p) => p.streams))).sort(
      (a, b) => a - b,
    );
    out.push(
      `| server | baseline RSS MiB | ${counts.map((c) => `KiB/stream @ ${int(c)}`).join(" | ")} | vs grpc-js @ ${int(counts.at(-1) ?? 0)} | load avg |`,
    );
    out.push(`|---|---|${counts.map(() => "---|").join("")}---|---|`);
    const perStream = (server: string, count: number) =>
      median(
        results.memory
          .filter((r) => r.server === server)
          .flatMap((r) => r.points.filter((p) => p.streams === count))
          .map((p) => p.bytesPerStream / 1024),
      );
    const last = counts.at(-1) ?? 0;
    for (const server of unique(results.memory.map((r) => r.server))) {
      const mine = results.memory.filter((r) => r.server === server);
      out.push(
        `| ${server} | ${(median(mine.map((r) => r.baselineRss)) / 2 ** 20).toFixed(1)} | ${counts.map((c) => perStream(server, c).toFixed(1)).join(" | ")} | ` +
          `${ratio(perStream(server, last), perStream("grpc-js", last))} | ${loads(mine.map((r) => r.load))} |`,
      );
    }
    out.push("");
    const sb = perStream("switchboard", last);
    const gj = perStream("grpc-js", last);
    targets.push({
      name: "Memory per idle subscriber stream ≤ 1.0× the grpc-js peer",
      measured: `${sb.toFixed(1)} vs ${gj.toFixed(1)} KiB/stream at ${int(last)} streams = ${ratio(sb, gj)}`,
      met: Number.isNaN(sb) || Number.isNaN(gj) ? undefined : sb <= gj,
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
      "| server | RPC | messages/s | vs grpc-js | grpc-status | load avg |",
      "|---|---|---|---|---|---|",
    );
    const mps = (server: string) =>
      median(
        results.streamThroughput.filter((r) => r.server === server).map((r) => r.messagesPerSecond),
      );
    for (const server of unique(results.streamThroughput.map((r) => r.server))) {
      const mine = results.streamThroughput.filter((r) => r.server === server);
      out.push(
        `| ${server} | UploadMessages | ${int(mps(server))}${range(mine.map((r) => r.messagesPerSecond))} | ${ratio(mps(server), mps("grpc-js"))} | ${unique(mine.map((r) => r.status)).join(", ")} | ${loads(mine.map((r) => r.load))} |`,
      );
    }
    out.push("");
  }

  targets.push({
    name: "Fan-out with WORKERS=auto ≥ 1.8× one core",
    measured: "not measured yet (needs both cores for the server; the generator shares core 1)",
    met: undefined,
  });
  out.push("## Targets (issue 6)", "", "| target | measured | met |", "|---|---|---|");
  for (const t of targets)
    out.push(
      `| ${t.name} | ${t.measured} | ${t.met === undefined ? "not measured" : t.met ? "yes" : "**no**"} |`,
    );
  out.push("");
  if (charts.length > 0) {
    out.push("## Charts", "");
    for (const c of charts) out.push(`![${c}](${c})`, "");
  }
  return out.join("\n");
}
