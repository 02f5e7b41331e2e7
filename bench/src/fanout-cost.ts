// Server CPU per delivery, at a fixed delivery rate, for several builds and room sizes (the
// suite's "cost" scenario, scenarios/fanout-cost.ts, measures the same for the working tree and
// its peers; this runs it for builds of other commits). The fan-out scenario's "sustained deliveries/s" needs an idle machine (its steps fail on latency
// when other work shares the cores); CPU seconds spent per delivery barely move with load on the
// other core, so a before/after of a fan-out change can be measured on a shared machine too.
//
// For each repetition, build and room size (interleaved, so a noisy minute does not favour one
// build): a fresh server (pinned to core 0), `subscribers` idle SubscribeMessages streams on
// subscribers/100 h2c connections, then `messages` publishes at `rate` deliveries/s in total
// (rate / subscribers messages/s), until every subscriber has every message. Reported: the
// server's CPU seconds over that window ÷ deliveries, µs; and the same window's idle CPU (the
// server measured for as long with no publish) subtracted, "net". Medians over repetitions.
//
//   cd bench && taskset -c 1 node --import tsx src/fanout-cost.ts \
//     --builds before=/tmp/before/apps/server/src/server.ts,after=apps/server/src/server.ts \
//     [--subscribers 1000,5000,10000] [--rate 20000] [--deliveries 400000] [--repetitions 3]
//     [--peers plain-grpc-js] [--profile DIR] [--traced after]
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadNow } from "./lib/machine.js";
import { withTracedBuilds } from "./lib/otlp-sink.js";
import { ROOT, type ServerKind, type StartOptions } from "./lib/servers.js";
import { median } from "./lib/stats.js";
import { type CostPoint, measureCost } from "./scenarios/fanout-cost.js";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    builds: { type: "string", default: "current=apps/server/src/server.ts" },
    subscribers: { type: "string", default: "1000,5000,10000" },
    rate: { type: "string", default: "20000" },
    deliveries: { type: "string", default: "400000" },
    repetitions: { type: "string", default: "3" },
    peers: { type: "string", default: "plain-grpc-js" },
    // Write each Node server's CPU profile (--cpu-prof) into this directory.
    profile: { type: "string" },
    // Builds to run again with tracing on (compare-builds.ts, lib/otlp-sink.ts).
    traced: { type: "string", default: "" },
  },
});
type Entry = { name: string; kind: ServerKind; start: StartOptions };
const { builds, sink } = await withTracedBuilds<Entry>(
  String(args.builds)
    .split(",")
    .map((pair) => {
      const [name, file] = pair.split("=") as [string, string];
      return {
        name,
        kind: "switchboard" as ServerKind,
        start: { switchboardSource: resolve(ROOT, file), cpuProfDir: args.profile },
      };
    }),
  String(args.traced),
);
const entries: Entry[] = [
  ...builds,
  ...String(args.peers)
    .split(",")
    .filter((p) => p !== "")
    .map((name) => ({ name, kind: name as ServerKind, start: { cpuProfDir: args.profile } })),
];
const sizes = String(args.subscribers).split(",").map(Number);
const rate = Number(args.rate);
const totalDeliveries = Number(args.deliveries);
const log = (line: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${line}`);

const results = new Map<string, CostPoint[]>();

log(`load ${loadNow()}`);
for (let rep = 1; rep <= Number(args.repetitions); rep++) {
  for (const subscribers of sizes) {
    for (const entry of entries) {
      const key = `${entry.name} @ ${subscribers}`;
      try {
        const point = await measureCost(entry.kind, entry.start, {
          subscribers,
          rate,
          deliveries: totalDeliveries,
        });
        if (point.error !== undefined) throw new Error(point.error);
        results.set(key, [...(results.get(key) ?? []), point]);
        log(
          `${key} rep ${rep}: ${point.usPerDelivery.toFixed(2)} µs/delivery (net of idle ${point.netUsPerDelivery.toFixed(2)}) over ${point.seconds.toFixed(1)} s  load ${loadNow()}`,
        );
      } catch (err) {
        log(`${key} rep ${rep}: failed: ${(err as Error).message}`);
      }
    }
  }
}
if (sink !== undefined) console.log(`\nOTLP export requests received: ${sink.requests()}`);
console.log("\nmedians, server CPU µs per delivery (gross / net of idle; all gross values):");
for (const [key, points] of results) {
  console.log(
    `${key.padEnd(28)} ${median(points.map((p) => p.usPerDelivery)).toFixed(2)} / ${median(points.map((p) => p.netUsPerDelivery)).toFixed(2)}  (${points.map((p) => p.usPerDelivery.toFixed(2)).join(", ")})`,
  );
}
process.exit(0);
