// The benchmark suite (`pnpm bench`): runs the scenarios of issue 6 against Switchboard and its
// peers, writes bench/results/results.json, RESULTS.md and PNG charts. See bench/README.md.
//
//   pnpm bench                                   the default run (~30 min)
//   pnpm bench -- --quick                        1 repetition, short steps: a smoke run
//   pnpm bench -- --scenarios fanout,unary       only some: fanout,cost,unary,memory,slow,stream,
//                                                whole,wake,crossnode
//   pnpm bench -- --report-only                  re-render RESULTS.md and charts from results.json
//   SEED_GO_BIN=path/to/seed-server pnpm bench   with the seed's grpc-go server (else its rows say
//                                                "not available")

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { describeMachine, loadNow, setOwnCores } from "./lib/machine.js";
import { normalizeResults, type Results } from "./lib/results.js";
import {
  ROOT,
  raiseFileLimit,
  SERVER_KINDS,
  type ServerKind,
  seedGoUnavailable,
} from "./lib/servers.js";
import { writeCharts } from "./report/charts.js";
import { renderMarkdown } from "./report/markdown.js";
import type { TracingRun } from "./report/tracing.js";
import { crossNodeScenario } from "./scenarios/cross-node.js";
import { fanoutScenario } from "./scenarios/fanout.js";
import { fanoutCostScenario } from "./scenarios/fanout-cost.js";
import { memoryScenario } from "./scenarios/memory.js";
import { slowConsumerScenario } from "./scenarios/slow-consumer.js";
import { streamThroughputScenario } from "./scenarios/stream-throughput.js";
import { unaryScenario } from "./scenarios/unary.js";
import { wakeUpScenario } from "./scenarios/wake-up.js";
import { wholeMachineScenario } from "./scenarios/whole-machine.js";

/** Every scenario, in the order a run takes them. */
const SCENARIOS = [
  "fanout",
  "cost",
  "unary",
  "memory",
  "slow",
  "stream",
  "whole",
  "wake",
  "crossnode",
] as const;

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    scenarios: { type: "string", default: SCENARIOS.join(",") },
    quick: { type: "boolean", default: false },
    repetitions: { type: "string" },
    // Only these servers (each scenario keeps those it applies to).
    servers: { type: "string" },
    subscribers: { type: "string" },
    streams: { type: "string" },
    "step-s": { type: "string" },
    // Tries of a fan-out step that is not sustained (default 1: no step is repeated).
    tries: { type: "string", default: "1" },
    // Worker threads reading the fan-out's subscribers (default: one per core the generator may
    // use; 0: the publisher's own thread). The same for every server.
    "generator-threads": { type: "string" },
    // The fixed delivery rate of the cost scenario, deliveries/s.
    "cost-rate": { type: "string", default: "20000" },
    out: { type: "string", default: join(ROOT, "bench", "results") },
    // The seed's grpc-go server binary; default: the SEED_GO_BIN environment variable.
    "seed-server": { type: "string" },
    profile: { type: "string" },
    "report-only": { type: "boolean", default: false },
  },
});

const quick = args.quick;
for (const s of String(args.scenarios).split(","))
  if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario ${s}`);
const generatorThreads =
  args["generator-threads"] === undefined ? undefined : Number(args["generator-threads"]);
const repetitions = Number(args.repetitions ?? (quick ? 1 : 3));
const scenarios = new Set(String(args.scenarios).split(","));
const only =
  args.servers === undefined ? undefined : new Set(String(args.servers).split(",") as ServerKind[]);
for (const s of only ?? []) if (!SERVER_KINDS.includes(s)) throw new Error(`unknown server ${s}`);
const start = { cpuProfDir: args.profile, seedServer: args["seed-server"] };
const log = (line: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${line}`);
// Servers that cannot run here are left out, and the report says so.
const unavailable: Record<string, string> = {};
const seedGo = seedGoUnavailable(start);
if (seedGo !== undefined) unavailable["seed-go"] = seedGo;
const pick = (servers: ServerKind[]) =>
  servers.filter((s) => (only === undefined || only.has(s)) && unavailable[s] === undefined);
const numbers = (s: string) => s.split(",").map(Number);
const tries = Number(args.tries);
// The stepped scenarios' offered deliveries/s (doubling) and step length, ms.
const deliveryRates = numbers("5000,10000,20000,40000,80000,160000,320000,640000");
const stepMs = Number(args["step-s"] ?? (quick ? 1.5 : 4)) * 1000;
const out = args.out;
mkdirSync(out, { recursive: true });
// The load generator on every core but core 0 (the pinned servers' core): core 1 on a 2-core
// machine, as `pnpm bench` starts it.
const nproc = cpus().length;
if (nproc > 2 && !args["report-only"]) setOwnCores(`1-${nproc - 1}`);

/** The commit measured: HEAD, and whether the work tree differs from it. */
function commitMeasured(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
    const dirty =
      execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], {
        cwd: ROOT,
        encoding: "utf8",
      }).trim() !== "";
    return dirty ? `${head} + uncommitted changes` : head;
  } catch {
    return "unknown (not a git work tree)";
  }
}
for (const [server, reason] of Object.entries(unavailable)) log(`${server}: ${reason}`);

let results: Results;
if (args["report-only"]) {
  results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as Results;
} else {
  log(`open-file limit ${raiseFileLimit()}`);
  const fresh: Results = {
    startedAt: new Date().toISOString(),
    machine: describeMachine(),
    quick,
    repetitions,
    fanout: [],
    unary: [],
    memory: [],
    slowConsumer: [],
    streamThroughput: [],
    wholeMachine: [],
    crossNode: [],
    fanoutCost: [],
    wakeUp: [],
    scenarioStartedAt: {},
    unavailable,
    commit: commitMeasured(),
  };
  // A run of some scenarios replaces only those in an existing results.json; the others stay,
  // each with the time it was measured.
  const file = join(out, "results.json");
  const all = SCENARIOS.every((s) => scenarios.has(s));
  results =
    !all && existsSync(file)
      ? {
          ...fresh,
          ...(JSON.parse(readFileSync(file, "utf8")) as Results),
          machine: fresh.machine,
          commit: fresh.commit as string,
        }
      : fresh;
  results.unavailable = unavailable;
  results.scenarioStartedAt ??= {};
  // Each scenario's own start: time, commit and load average (a partial run keeps the others').
  const begin = (name: string) => {
    (results.scenarioStartedAt as Record<string, string>)[name] = new Date().toISOString();
    results.scenarioCommit = { ...results.scenarioCommit, [name]: fresh.commit as string };
    results.scenarioLoad = { ...results.scenarioLoad, [name]: loadNow() };
  };
  const save = () =>
    writeFileSync(join(out, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  if (scenarios.has("fanout")) {
    begin("fanout");
    // Every server at 1,000 subscribers; Switchboard, both grpc-js peers and seed-go at 5,000 and
    // 10,000, where the cost per delivery shows how it grows with the room.
    const counts = numbers(args.subscribers ?? (quick ? "1000" : "1000,5000,10000"));
    const everyServer: ServerKind[] = [
      "switchboard",
      "plain-grpc-js",
      "grpc-js-rooms",
      "seed-go",
      "h2-ceiling",
      "switchboard-sqlite",
    ];
    results.fanout = [];
    for (const subscribers of counts) {
      const servers =
        subscribers === 1000 || args.subscribers !== undefined
          ? everyServer
          : (["switchboard", "plain-grpc-js", "grpc-js-rooms", "seed-go"] as ServerKind[]);
      results.fanout.push(
        ...(await fanoutScenario({
          servers: pick(servers),
          subscriberCounts: [subscribers],
          repetitions,
          deliveryRates,
          stepMs,
          tries,
          generatorThreads,
          start,
          log,
        })),
      );
    }
    save();
  }
  if (scenarios.has("cost")) {
    begin("cost");
    // Issue 19: server CPU per delivery at a fixed rate, every server doing the same work.
    results.fanoutCost = await fanoutCostScenario({
      servers: pick(["switchboard", "plain-grpc-js", "grpc-js-rooms", "seed-go"]),
      subscriberCounts: numbers(args.subscribers ?? (quick ? "1000" : "1000,10000")),
      repetitions,
      rate: Number(args["cost-rate"]),
      deliveries: quick ? 100_000 : 400_000,
      generatorThreads,
      start,
      log,
    });
    save();
  }
  if (scenarios.has("unary")) {
    begin("unary");
    results.unary = await unaryScenario({
      servers: pick([
        "switchboard",
        "plain-grpc-js",
        "grpc-js-rooms",
        "seed-go",
        "h2-ceiling",
        "fastify-json",
        "switchboard-sqlite",
      ]),
      repetitions,
      durationS: quick ? 2 : 5,
      start,
      log,
    });
    save();
  }
  if (scenarios.has("memory")) {
    begin("memory");
    results.memory = await memoryScenario({
      servers: pick(["switchboard", "plain-grpc-js", "grpc-js-rooms", "seed-go"]),
      streamCounts: numbers(args.streams ?? (quick ? "1000,5000" : "5000,10000,100000")),
      repetitions,
      start,
      log,
    });
    save();
  }
  if (scenarios.has("slow")) {
    begin("slow");
    results.slowConsumer = await slowConsumerScenario({
      servers: pick(["switchboard", "plain-grpc-js", "grpc-js-rooms"]),
      repetitions,
      durationS: quick ? 8 : 12,
      start,
      log,
    });
    save();
  }
  if (scenarios.has("stream")) {
    begin("stream");
    results.streamThroughput = await streamThroughputScenario({
      servers: pick(["switchboard", "plain-grpc-js", "grpc-js-rooms", "seed-go"]),
      repetitions,
      messages: quick ? 5000 : 20000,
      start,
      log,
    });
    save();
  }
  if (scenarios.has("whole")) {
    begin("whole");
    // Every core for every process: Switchboard WORKERS=2 on Redis and on SQLite (issue 20)
    // against seed-go GOMAXPROCS=2.
    results.wholeMachine = await wholeMachineScenario({
      servers: pick(["switchboard", "switchboard-sqlite", "seed-go"]) as (
        | "switchboard"
        | "switchboard-sqlite"
        | "seed-go"
      )[],
      subscribers: 1000,
      repetitions,
      deliveryRates,
      stepMs,
      tries,
      generatorThreads,
      start,
      log,
    });
    save();
  }
  if (scenarios.has("wake")) {
    begin("wake");
    // Issue 20: cross-worker wake-up cost with the room count, WORKERS=2 on SQLite and on Redis.
    results.wakeUp = await wakeUpScenario({
      stores: ["sqlite", "redis"],
      roomCounts: [1, 1000],
      repetitions,
      messages: quick ? 2000 : 4000,
      start,
      log,
    });
    save();
  }
  if (scenarios.has("crossnode")) {
    begin("crossnode");
    // Issue 14: 3 nodes on one Redis against 3 nodes on a Redis Cluster, 999 subscribers in 3
    // rooms on 3 masters, every delivery crossing nodes; nothing pinned.
    results.crossNode = await crossNodeScenario({
      setups: ["redis", "redis-cluster"],
      subscribers: 999,
      repetitions,
      deliveryRates,
      stepMs,
      tries,
      start,
      log,
    });
    save();
  }
}
results = normalizeResults(results);
const charts = await writeCharts(results, out);
// The tracing section's readings (report/tracing.ts), measured apart, when present.
const tracingFile = join(out, "tracing.json");
const tracing = existsSync(tracingFile)
  ? (JSON.parse(readFileSync(tracingFile, "utf8")) as TracingRun)
  : undefined;
writeFileSync(join(out, "RESULTS.md"), renderMarkdown(results, charts, tracing));
log(`wrote ${join(out, "RESULTS.md")} and ${charts.length} charts`);
process.exit(0);
