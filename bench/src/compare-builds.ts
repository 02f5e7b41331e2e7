// Before/after for one optimisation: the suite's fan-out, unary and memory scenarios run against
// the servers of several commits and the plain grpc-js peer, interleaved per repetition in one run, so
// a noisy minute does not favour one of them. Prints medians.
//
//   git worktree add /tmp/before <commit>
//   ln -s $PWD/apps/server/node_modules /tmp/before/apps/server/node_modules
//   ln -s $PWD/libs/proto/node_modules /tmp/before/libs/proto/node_modules
//   cd bench && taskset -c 1 node --import tsx src/compare-builds.ts \
//     --builds before=/tmp/before/apps/server/src/server.ts,after=apps/server/src/server.ts \
//     [--scenarios fanout,unary,memory] [--repetitions 3] [--subscribers 1000] [--no-peer]
//     [--peers plain-grpc-js,fastify-json] [--traced after]
//
// `--traced name,…`: each named build runs a second time as `name+otel`, with OpenTelemetry
// tracing on at 100% sampling exporting OTLP/HTTP protobuf to a collector in this process that
// discards what it gets (lib/otlp-sink.ts). The same option in unary-cpu.ts and fanout-cost.ts.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { withTracedBuilds } from "./lib/otlp-sink.js";
import { ROOT, type ServerKind, type StartOptions } from "./lib/servers.js";
import { median } from "./lib/stats.js";
import { fanoutScenario } from "./scenarios/fanout.js";
import { memoryScenario } from "./scenarios/memory.js";
import { unaryScenario } from "./scenarios/unary.js";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  allowNegative: true,
  options: {
    builds: { type: "string" },
    scenarios: { type: "string", default: "fanout,unary" },
    repetitions: { type: "string", default: "3" },
    subscribers: { type: "string", default: "1000" },
    streams: { type: "string", default: "5000" },
    peer: { type: "boolean", default: true },
    // Peers beside the builds (unary: fastify-json is the yardstick of Connect JSON over HTTP/1.1).
    peers: { type: "string", default: "plain-grpc-js" },
    traced: { type: "string", default: "" },
  },
});
if (args.builds === undefined) throw new Error("--builds name=file,name=file is required");
const builds = String(args.builds)
  .split(",")
  .map((pair) => {
    const [name, file] = pair.split("=") as [string, string];
    return { name, start: { switchboardSource: resolve(ROOT, file) } as StartOptions };
  });
const peers = args.peer
  ? String(args.peers)
      .split(",")
      .filter((p) => p !== "")
  : [];
const { builds: measured, sink } = await withTracedBuilds(builds, String(args.traced));
const entries = [...measured, ...peers.map((name) => ({ name, start: {} as StartOptions }))];
const scenarios = new Set(String(args.scenarios).split(","));
const log = (line: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${line}`);
const results = new Map<string, Record<string, number[]>>();
const record = (name: string, metric: string, value: number) => {
  const byMetric = results.get(name) ?? {};
  byMetric[metric] = [...(byMetric[metric] ?? []), value];
  results.set(name, byMetric);
};

for (let rep = 1; rep <= Number(args.repetitions); rep++) {
  for (const entry of entries) {
    const server = (peers.includes(entry.name) ? entry.name : "switchboard") as ServerKind;
    if (scenarios.has("fanout")) {
      const [run] = await fanoutScenario({
        servers: [server],
        subscriberCounts: [Number(args.subscribers)],
        repetitions: 1,
        deliveryRates: [5000, 10000, 20000, 40000, 80000, 160000, 320000, 640000],
        stepMs: 4000,
        start: entry.start,
        log: (l) => log(`${entry.name} ${l}`),
      });
      record(entry.name, "fanout sustained deliveries/s", run?.sustained ?? 0);
    }
    if (scenarios.has("unary")) {
      const runs = await unaryScenario({
        servers: [server],
        repetitions: 1,
        durationS: 3,
        start: entry.start,
        log: (l) => log(`${entry.name} ${l}`),
      });
      for (const r of runs) record(entry.name, `unary ${r.protocol} req/s`, r.rps);
    }
    if (scenarios.has("memory")) {
      const [run] = await memoryScenario({
        servers: [server],
        streamCounts: [Number(args.streams)],
        repetitions: 1,
        start: entry.start,
        log: (l) => log(`${entry.name} ${l}`),
      });
      const point = run?.points.at(-1);
      if (point !== undefined) {
        record(entry.name, "memory KiB/stream", Math.round(point.bytesPerStream / 102.4) / 10);
        if (point.heapBytesPerStream !== undefined) {
          record(
            entry.name,
            "memory live heap KiB/stream",
            Math.round(point.heapBytesPerStream / 102.4) / 10,
          );
        }
      }
    }
  }
}

if (sink !== undefined) console.log(`\nOTLP export requests received: ${sink.requests()}`);
console.log("\nmedians (all values):");
for (const [name, byMetric] of results) {
  for (const [metric, values] of Object.entries(byMetric)) {
    console.log(
      `${name.padEnd(12)} ${metric.padEnd(34)} ${median(values)}  (${values.join(", ")})`,
    );
  }
}
process.exit(0);
