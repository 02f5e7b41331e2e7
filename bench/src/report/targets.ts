// The targets of issues 19 and 20 as rows of RESULTS.md: each with the figure that decides it
// (median over repetitions, with the range), the peers' figures from the same run, the ratio of
// the medians, and whether it is met. A target whose run failed says so with the failure; one
// whose run is missing says "not measured"; a row never passes on missing or bad data.
import type { StepResult } from "../lib/fanout-load.js";
import type { FanoutRun, Results } from "../lib/results.js";
import { median } from "../lib/stats.js";
import { UNARY_LOAD } from "../scenarios/unary.js";
import { WAKE_UP_SETUPS } from "../scenarios/wake-up.js";
import { WHOLE_MACHINE_NAMES } from "../scenarios/whole-machine.js";

/** Whether a target is met. */
export type Verdict =
  | "yes"
  | "no"
  | "floor only"
  | "moonshot met"
  | "not measured"
  | "failed"
  | "undecided";

export interface TargetRow {
  target: string;
  /** Switchboard's figure: median (range) and what it is. */
  measured: string;
  /** The peers' figures in the same run, and the ratios. */
  peers: string;
  verdict: Verdict;
  /** Why, when the verdict needs one (a failure, a generator that was the limit). */
  note?: string;
}

const isNumber = (n: number | null | undefined): n is number =>
  typeof n === "number" && !Number.isNaN(n);

/** Median with min–max range of the numbers among `values`; "—" when none. */
export function spread(values: (number | undefined)[], digits = 1): string {
  const known = values.filter(isNumber);
  if (known.length === 0) return "—";
  const f = (n: number) =>
    Math.abs(n) >= 1000 ? Math.round(n).toLocaleString("en-US") : n.toFixed(digits);
  const lo = Math.min(...known);
  const hi = Math.max(...known);
  return `${f(median(known))}${lo !== hi ? ` (${f(lo)}–${f(hi)})` : ""}`;
}

/** A peer's figure and the ratio of the medians, or that the peer was not in this run. */
function peer(
  name: string,
  values: (number | undefined)[],
  mine: number,
  unit: string,
  digits = 1,
): string {
  const theirs = values.filter(isNumber);
  if (theirs.length === 0) return `${name} not in this run`;
  return `${name} ${spread(theirs, digits)} ${unit} (${times(mine, median(theirs))})`;
}

const mid = (values: (number | undefined)[]) => median(values.filter(isNumber));
const times = (a: number, b: number) =>
  isNumber(a) && isNumber(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : "—";
const errorsOf = (runs: { error?: string | undefined }[]) => [
  ...new Set(runs.flatMap((r) => (r.error === undefined ? [] : [r.error]))),
];

/** "≤ 1.0×"-style verdict: `value / peer` within `limit` (lower is better unless `higher`). */
function compare(value: number, peer: number, limit: number, higher = false): Verdict {
  if (!isNumber(value) || !isNumber(peer) || peer === 0) return "not measured";
  const r = value / peer;
  return (higher ? r >= limit : r <= limit) ? "yes" : "no";
}

// ---- Memory per idle stream ----

function memoryRows(results: Results): TargetRow[] {
  const rows: TargetRow[] = [];
  const points = (server: string, count: number) =>
    results.memory
      .filter((r) => r.server === server)
      .flatMap((r) => r.points.filter((p) => p.streams === count));
  for (const count of [5000, 10000, 100000]) {
    const label = count.toLocaleString("en-US");
    const sb = points("switchboard", count);
    if (sb.length === 0) {
      rows.push({
        target: `Memory per idle stream at ${label} streams: RSS and live heap ≤ 1.0× plain grpc-js`,
        measured: "—",
        peers: "—",
        verdict: "not measured",
      });
      continue;
    }
    const good = (ps: typeof sb) => ps.filter((p) => p.error === undefined);
    const failed = sb.filter((p) => p.error !== undefined);
    const failNote =
      failed.length === 0
        ? undefined
        : `${failed.length} of ${sb.length} repetitions failed: ${[...new Set(failed.map((p) => `${p.opened ?? 0}/${count} opened: ${p.error}`))].join("; ")}`;
    const kib = (ps: typeof sb, f: (p: (typeof sb)[number]) => number | undefined) =>
      good(ps).map((p) => {
        const v = f(p);
        return v === undefined ? undefined : v / 1024;
      });
    for (const [what, field] of [
      ["RSS", (p: (typeof sb)[number]) => p.bytesPerStream],
      ["live heap after GC", (p: (typeof sb)[number]) => p.heapBytesPerStream],
    ] as const) {
      const mine = kib(sb, field);
      const plain = kib(points("plain-grpc-js", count), field);
      const seed = kib(points("seed-go", count), field);
      const verdict = failNote !== undefined ? "failed" : compare(mid(mine), mid(plain), 1.0);
      const seedVerdict = what === "RSS" ? compare(mid(mine), mid(seed), 1.0) : "not measured";
      rows.push({
        target: `Memory per idle stream at ${label} streams, ${what}: ≤ 1.0× plain grpc-js${what === "RSS" ? " (moonshot: ≤ 1.0× seed grpc-go)" : ""}`,
        measured: `${spread(mine)} KiB/stream`,
        peers:
          peer("plain-grpc-js", plain, mid(mine), "KiB") +
          (what === "RSS"
            ? `; ${peer("seed-go", seed, mid(mine), "KiB")}`
            : "; seed-go — (a Go heap is not readable from outside)"),
        verdict: verdict === "yes" && seedVerdict === "yes" ? "moonshot met" : verdict,
        ...(failNote === undefined ? {} : { note: failNote }),
      });
    }
  }
  return rows;
}

// ---- Unary ----

function unaryRows(results: Results): TargetRow[] {
  const runsOf = (server: string, protocol: string) =>
    results.unary.filter((r) => r.server === server && r.protocol === protocol);
  const row = (
    target: string,
    protocol: string,
    peerName: string,
    limit: number,
    floor?: number,
  ): TargetRow => {
    const mine = runsOf("switchboard", protocol);
    const theirs = runsOf(peerName, protocol);
    if (mine.length === 0) return { target, measured: "—", peers: "—", verdict: "not measured" };
    const a = mid(mine.map((r) => r.rps));
    const b = mid(theirs.map((r) => r.rps));
    const bad = [...mine, ...theirs].filter((r) => r.badAnswers > 0 || r.error !== undefined);
    const errors = errorsOf([...mine, ...theirs]);
    let verdict: Verdict = compare(a, b, limit, true);
    if (verdict === "no" && floor !== undefined && a / b >= floor) verdict = "floor only";
    let note: string | undefined;
    if (bad.length > 0) {
      verdict = "failed";
      note = `${bad.length} run(s) with bad answers or errors${errors.length > 0 ? `: ${errors.join("; ")}` : ""} (${bad.map((r) => `${r.server} rep ${r.repetition}: ${r.badAnswers} bad`).join(", ")})`;
    }
    return {
      target,
      measured: `${spread(
        mine.map((r) => r.rps),
        0,
      )} req/s`,
      peers: peer(
        peerName,
        theirs.map((r) => r.rps),
        a,
        "req/s",
        0,
      ),
      verdict,
      ...(note === undefined ? {} : { note }),
    };
  };
  return [
    row(
      `Unary gRPC SendMessage (h2load ${UNARY_LOAD.h2}) ≥ 1.0× plain grpc-js`,
      "grpc-h2",
      "plain-grpc-js",
      1.0,
    ),
    row(
      `Health.Check over gRPC (h2load ${UNARY_LOAD.h2}) ≥ 1.0× plain grpc-js (grpc-health-check)`,
      "grpc-health-h2",
      "plain-grpc-js",
      1.0,
    ),
    row(
      `Connect JSON SendMessage over HTTP/1.1 (h2load ${UNARY_LOAD.h1}) ≥ 0.7× the plain Fastify route (floor 0.5×)`,
      "connect-json-h1",
      "fastify-json",
      0.7,
      0.5,
    ),
  ];
}

// ---- Fan-out cost and tail ----

function costRows(results: Results): TargetRow[] {
  const rows: TargetRow[] = [];
  const cost = results.fanoutCost ?? [];
  for (const count of [1000, 10000]) {
    const label = count.toLocaleString("en-US");
    const of = (server: string) =>
      cost.filter((r) => r.server === server && r.subscribers === count);
    const mine = of("switchboard");
    const target = `Fan-out server CPU per delivery at ${label} subscribers (fixed ${(mine[0]?.rate ?? 20000).toLocaleString("en-US")} deliveries/s): ≤ 1.0× plain grpc-js, ≤ 1.3× seed grpc-go (moonshot ≤ 1.0×)`;
    if (mine.length === 0) {
      rows.push({ target, measured: "—", peers: "—", verdict: "not measured" });
      continue;
    }
    const ok = (runs: typeof mine) => runs.filter((r) => r.error === undefined);
    const a = mid(ok(mine).map((r) => r.usPerDelivery));
    const plain = mid(ok(of("plain-grpc-js")).map((r) => r.usPerDelivery));
    const seed = mid(ok(of("seed-go")).map((r) => r.usPerDelivery));
    const failed = [...mine, ...of("plain-grpc-js"), ...of("seed-go")].filter(
      (r) => r.error !== undefined,
    );
    const vsPlain = compare(a, plain, 1.0);
    const vsSeed = compare(a, seed, 1.3);
    let verdict: Verdict =
      vsPlain === "not measured"
        ? "not measured"
        : vsPlain === "yes" && vsSeed !== "no"
          ? compare(a, seed, 1.0) === "yes"
            ? "moonshot met"
            : "yes"
          : "no";
    if (failed.length > 0) verdict = "failed";
    const seedNote =
      failed.length === 0 && vsSeed === "not measured"
        ? "the seed grpc-go part not measured"
        : undefined;
    rows.push({
      target,
      measured: `${spread(
        ok(mine).map((r) => r.usPerDelivery),
        2,
      )} µs/delivery (net of idle ${spread(
        ok(mine).map((r) => r.netUsPerDelivery),
        2,
      )})`,
      peers:
        `${peer(
          "plain-grpc-js",
          ok(of("plain-grpc-js")).map((r) => r.usPerDelivery),
          a,
          "µs",
          2,
        )}; ` +
        peer(
          "seed-go",
          ok(of("seed-go")).map((r) => r.usPerDelivery),
          a,
          "µs",
          2,
        ),
      verdict,
      ...(seedNote === undefined ? {} : { note: seedNote }),
      ...(failed.length > 0
        ? {
            note: failed.map((r) => `${r.server} rep ${r.repetition}: ${r.error}`).join("; "),
          }
        : {}),
    });
  }
  return rows;
}

/** The first try of the step at `rate` messages/s of each run. */
function stepsAt(runs: FanoutRun[], rate: number): StepResult[] {
  return runs.flatMap((r) => r.steps.filter((s) => s.rate === rate && (s.attempt ?? 1) === 1));
}

function tailRow(results: Results): TargetRow {
  const target =
    "Fan-out p99 ≤ 100 ms on every subscriber at 5,000 subscribers and 1 message/s, the generator not the limit";
  const at = (server: string) =>
    results.fanout.filter((r) => r.server === server && r.subscribers === 5000);
  const mine = at("switchboard");
  if (mine.length === 0) return { target, measured: "—", peers: "—", verdict: "not measured" };
  const steps = stepsAt(mine, 1);
  const failedRuns = mine.filter((r) => r.steps.length === 0);
  const generator = `generator ${spread(
    steps.map((s) => s.generatorCpuPercent),
    0,
  )}% CPU of ${[...new Set(steps.map((s) => s.generatorCores))].join("/")} core(s), ${[...new Set(steps.map((s) => s.generatorThreads))].join("/")} thread(s), ${spread(
    steps.map((s) => s.generatorMsPerMessage),
    1,
  )} ms/message`;
  const peerTail = (server: string) => {
    const theirs = stepsAt(at(server), 1);
    return theirs.length === 0
      ? `${server} not in this run`
      : `${server} p99 ${spread(theirs.map((s) => s.p99))} ms, ${theirs.filter((s) => (s.subscribersMissing ?? 0) > 0).length} rep(s) with a missed delivery`;
  };
  const missing = steps.filter((s) => (s.subscribersMissing ?? 0) > 0 || s.delivered < s.expected);
  const limited = steps.filter((s) => s.generatorLimited === true);
  let verdict: Verdict;
  let note: string | undefined;
  if (steps.length === 0 || failedRuns.length > 0) {
    verdict = "failed";
    note = errorsOf(failedRuns).join("; ") || "no step at 1 message/s";
  } else if (limited.length > 0) {
    verdict = "undecided";
    note = `the generator was the limit in ${limited.length} of ${steps.length} repetitions (≥ 90% of its cores, or ≥ 25 ms of its CPU per message)`;
  } else {
    verdict =
      missing.length === 0 &&
      steps.every((s) => s.failedSends === 0 && isNumber(s.p99) && s.p99 <= 100)
        ? "yes"
        : "no";
    if (missing.length > 0)
      note = `${missing.length} repetition(s) in which a subscriber missed a message`;
  }
  return {
    target,
    measured: `p99 ${spread(steps.map((s) => s.p99))} ms (max ${spread(steps.map((s) => s.max))} ms); ${generator}`,
    peers: ["plain-grpc-js", "seed-go"].map(peerTail).join("; "),
    verdict,
    ...(note === undefined ? {} : { note }),
  };
}

/** The rows of "Targets (issue 19)". */
export function issue19Targets(results: Results): TargetRow[] {
  return [...memoryRows(results), ...unaryRows(results), ...costRows(results), tailRow(results)];
}

// ---- Issue 20 ----

/** The rows of "Targets (issue 20)". */
export function issue20Targets(results: Results): TargetRow[] {
  const whole = results.wholeMachine ?? [];
  const of = (name: string) => whole.filter((r) => r.server === name);
  const sustained = (runs: FanoutRun[]) =>
    runs.filter((r) => r.steps.length > 0).map((r) => r.sustained);
  const sqlite = of(WHOLE_MACHINE_NAMES["switchboard-sqlite"]);
  const redis = of(WHOLE_MACHINE_NAMES.switchboard);
  const seed = of(WHOLE_MACHINE_NAMES["seed-go"]);
  const a = mid(sustained(sqlite));
  const rows: TargetRow[] = [];
  const wholeRow = (
    target: string,
    peerName: string,
    peerRuns: FanoutRun[],
    limit: number,
    moonshot?: number,
  ): TargetRow => {
    if (sqlite.length === 0) return { target, measured: "—", peers: "—", verdict: "not measured" };
    const b = mid(sustained(peerRuns));
    const failed = sqlite.filter((r) => r.steps.length === 0);
    const peers = peer(peerName, sustained(peerRuns), a, "deliveries/s", 0);
    if (failed.length > 0)
      return {
        target,
        measured: `failed in ${failed.length} of ${sqlite.length} repetitions`,
        peers,
        verdict: "failed",
        note: errorsOf(failed).join("; "),
      };
    let verdict = compare(a, b, limit, true);
    if (verdict === "yes" && moonshot !== undefined && compare(a, b, moonshot, true) === "yes")
      verdict = "moonshot met";
    return {
      target,
      measured: `${spread(sustained(sqlite), 0)} deliveries/s sustained at 1,000 subscribers`,
      peers,
      verdict,
    };
  };
  rows.push(
    wholeRow(
      "Whole machine, fan-out at 1,000 subscribers: SQLite WORKERS=2 ≥ 0.8× the same on Redis",
      WHOLE_MACHINE_NAMES.switchboard,
      redis,
      0.8,
    ),
    wholeRow(
      "Whole machine: SQLite WORKERS=2 ≥ 1.0× seed grpc-go GOMAXPROCS=2 (moonshot 1.5×)",
      WHOLE_MACHINE_NAMES["seed-go"],
      seed,
      1.0,
      1.5,
    ),
  );
  const wake = results.wakeUp ?? [];
  for (const store of ["sqlite", "redis"] as const) {
    const setup = WAKE_UP_SETUPS[store];
    const target = `Cross-worker wake-up cost flat with the room count, ${setup}: CPU per delivery with 1,000 rooms of one subscriber ≤ ${WAKE_FLAT}× one room (net of idle)`;
    const runs = wake.filter((r) => r.setup === setup);
    if (runs.length === 0) {
      rows.push({ target, measured: "—", peers: "—", verdict: "not measured" });
      continue;
    }
    const at = (rooms: number) => runs.filter((r) => (r.rooms ?? 1) === rooms);
    const failed = runs.filter((r) => r.error !== undefined);
    const many = mid(at(1000).map((r) => r.netUsPerDelivery));
    const one = mid(at(1).map((r) => r.netUsPerDelivery));
    rows.push({
      target,
      measured:
        failed.length === runs.length
          ? `failed in every repetition`
          : `${spread(
              at(1000).map((r) => r.netUsPerDelivery),
              2,
            )} µs/delivery at 1,000 rooms (gross ${spread(
              at(1000).map((r) => r.usPerDelivery),
              2,
            )})`,
      peers: `1 room ${spread(
        at(1).map((r) => r.netUsPerDelivery),
        2,
      )} µs (gross ${spread(
        at(1).map((r) => r.usPerDelivery),
        2,
      )}): ${times(many, one)}`,
      verdict: failed.length > 0 ? "failed" : compare(many, one, WAKE_FLAT),
      ...(failed.length > 0 ? { note: errorsOf(failed).join("; ") } : {}),
    });
  }
  return rows;
}

/** How much more CPU per delivery 1,000 rooms may cost than one room and still read as flat. */
export const WAKE_FLAT = 1.2;

/** A targets table in markdown. */
export function targetsTable(rows: TargetRow[]): string[] {
  const cell = (s: string) => s.replaceAll("|", "\\|");
  return [
    "| target | measured (median of repetitions, range) | peers in the same run (ratio) | met |",
    "|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${cell(r.target)} | ${cell(r.measured)} | ${cell(r.peers)} | ${r.verdict === "yes" || r.verdict === "moonshot met" ? r.verdict : `**${r.verdict}**`}${r.note === undefined ? "" : `: ${cell(r.note)}`} |`,
    ),
  ];
}
