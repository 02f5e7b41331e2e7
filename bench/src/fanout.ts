// Fan-out benchmark, on its own (the suite's scenario 1 is scenarios/fanout.ts): S gRPC
// SubscribeMessages streams to one room over C HTTP/2 connections, one publisher sending
// SendMessage open-loop at stepped rates (lib/fanout-load.ts). Server pinned to core 0, this
// generator to core 1. seed-go needs SEED_GO_BIN (or --seed-server); see bench/README.md.
//
//   taskset -c 1 node --import tsx bench/src/fanout.ts [--servers switchboard,plain-grpc-js]
//     [--subscribers 1000] [--connections 10] [--rates 10,25,50,100,200] [--step-s 4]
//     [--tries 1] [--one-user] [--profile DIR] [--switchboard-source FILE] [--every-step]
import { parseArgs } from "node:util";
import { Publisher, runSteps, SubscriberSet } from "./lib/fanout-load.js";
import { raiseFileLimit, type ServerKind, startServer } from "./lib/servers.js";

const { values: args } = parseArgs({
  options: {
    servers: { type: "string", default: "switchboard,plain-grpc-js" },
    subscribers: { type: "string", default: "1000" },
    connections: { type: "string", default: "10" },
    // Publish rates, messages/s.
    rates: { type: "string", default: "10,25,50,100,200,400" },
    "step-s": { type: "string", default: "4" },
    // Tries of a step that is not sustained (1: none repeated); every try is printed.
    tries: { type: "string", default: "1" },
    // The seed's grpc-go server binary; default: the SEED_GO_BIN environment variable.
    "seed-server": { type: "string" },
    // Every subscriber as one user: one JOIN instead of a JOIN per subscriber (presence storm).
    "one-user": { type: "boolean", default: false },
    // Write a V8 CPU profile of each Node server into this directory (--cpu-prof).
    profile: { type: "string" },
    // Another build's server entry (a worktree's apps/server/src/server.ts), for before/after.
    "switchboard-source": { type: "string" },
    // Run every rate even after a step that is not sustained (CPU per delivery at fixed rates).
    "every-step": { type: "boolean", default: false },
  },
});
const SUBSCRIBERS = Number(args.subscribers);
raiseFileLimit();

const summary: Record<string, number> = {};
for (const kind of String(args.servers).split(",") as ServerKind[]) {
  const server = await startServer(kind, {
    cpuProfDir: args.profile,
    seedServer: args["seed-server"],
    switchboardSource: args["switchboard-source"],
  });
  try {
    const subs = new SubscriberSet(server.url, {
      subscribers: SUBSCRIBERS,
      connections: Number(args.connections),
      room: "bench",
      oneUser: args["one-user"],
    });
    const settled = await subs.settle();
    console.log(`${kind.padEnd(20)} ${SUBSCRIBERS} subscribers settled in ${settled.toFixed(1)} s`);
    const publisher = new Publisher(server.url, "bench");
    const results = await runSteps(subs, publisher, {
      deliveryRates: String(args.rates)
        .split(",")
        .map((r) => Number(r) * SUBSCRIBERS),
      stepMs: Number(args["step-s"]) * 1000,
      tries: Number(args.tries),
      everyStep: args["every-step"],
      server,
      log: (line) => console.log(`${kind.padEnd(20)} ${line}`),
    });
    publisher.close();
    subs.close();
    summary[kind] = results.filter((r) => r.sustained).at(-1)?.deliveriesPerSecond ?? 0;
  } finally {
    await server.stop();
  }
}
console.log(`\nhighest sustained deliveries/s at ${SUBSCRIBERS} subscribers:`, summary);
process.exit(0);
