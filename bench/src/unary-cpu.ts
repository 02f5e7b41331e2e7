// Server CPU per unary SendMessage: a fixed number of requests from h2load (gRPC over h2c, and
// Connect JSON over HTTP/1.1 with `--h1`), the server's CPU seconds read from /proc before and
// after. On a shared machine the requests/s of a run follow the load of the other tenants; the
// CPU time per request much less so. Builds and peers are interleaved per repetition, as in
// compare-builds.ts (its header shows how to set up the worktrees). Prints medians.
//
//   cd bench && taskset -c 1 node --import tsx src/unary-cpu.ts \
//     --builds before=/tmp/before/apps/server/src/server.ts,after=apps/server/src/server.ts \
//     [--requests 20000] [--repetitions 3] [--peers plain-grpc-js]
//     [--protocols grpc-h2,connect-json-h1] [--traced after]
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs, promisify } from "node:util";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { withTracedBuilds } from "./lib/otlp-sink.js";
import {
  cpuSecondsOf,
  ROOT,
  type ServerKind,
  type StartOptions,
  startServer,
} from "./lib/servers.js";
import { median } from "./lib/stats.js";

const { values: args } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    builds: { type: "string" },
    requests: { type: "string", default: "20000" },
    repetitions: { type: "string", default: "3" },
    peers: { type: "string", default: "plain-grpc-js" },
    protocols: { type: "string", default: "grpc-h2,connect-json-h1" },
    // Builds to run again with tracing on (compare-builds.ts, lib/otlp-sink.ts).
    traced: { type: "string", default: "" },
  },
});
if (args.builds === undefined) throw new Error("--builds name=file,name=file is required");

const PATH = "/chat.ChatService/SendMessage";
const request = create(SendMessageRequestSchema, {
  room: "unary",
  user: "bench",
  content: "hello from the unary benchmark",
});
const proto = toBinary(SendMessageRequestSchema, request);
const envelope = Buffer.alloc(5 + proto.length);
envelope.writeUInt32BE(proto.length, 1);
envelope.set(proto, 5);
const files = {
  grpc: `/tmp/switchboard-unary-cpu-${process.pid}.grpc`,
  json: `/tmp/switchboard-unary-cpu-${process.pid}.json`,
};
writeFileSync(files.grpc, envelope);
writeFileSync(files.json, toJsonString(SendMessageRequestSchema, request));

type Protocol = "grpc-h2" | "connect-json-h1";
const ARGS: Record<Protocol, string[]> = {
  "grpc-h2": ["-d", files.grpc, "-H", "content-type: application/grpc", "-H", "te: trailers"],
  "connect-json-h1": [
    "--h1",
    "-d",
    files.json,
    "-H",
    "content-type: application/json",
    "-H",
    "connect-protocol-version: 1",
  ],
};

/** h2load on core 1, `n` requests over 10 connections × 10 streams: req/s and 2xx answers. */
async function h2load(url: string, protocol: Protocol, n: number) {
  const { stdout } = await promisify(execFile)(
    "taskset",
    ["-c", "1", "h2load", "-n", String(n), "-c", "10", "-m", "10", ...ARGS[protocol], url + PATH],
    { encoding: "utf8" },
  );
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(stdout)?.[1] ?? 0);
  const ok = Number(/status codes: (\d+) 2xx/.exec(stdout)?.[1] ?? 0);
  return { rps, ok };
}

const listed = String(args.builds)
  .split(",")
  .map((pair) => {
    const [name, file] = pair.split("=") as [string, string];
    return {
      name,
      kind: "switchboard" as ServerKind,
      start: { switchboardSource: resolve(ROOT, file) },
    };
  });
const { builds, sink } = await withTracedBuilds(
  listed as Array<{ name: string; kind: ServerKind; start: StartOptions }>,
  String(args.traced),
);
const peers = String(args.peers)
  .split(",")
  .filter((p) => p !== "")
  .map((name) => ({ name, kind: name as ServerKind, start: {} as StartOptions }));
const n = Number(args.requests);
const results = new Map<string, number[]>();
const record = (key: string, value: number) =>
  results.set(key, [...(results.get(key) ?? []), value]);

for (let rep = 1; rep <= Number(args.repetitions); rep++) {
  for (const entry of [...builds, ...peers]) {
    const server = await startServer(entry.kind, entry.start);
    const protocols = String(args.protocols)
      .split(",")
      .filter((p): p is Protocol => p in ARGS)
      .filter((p) => entry.kind === "switchboard" || p === "grpc-h2");
    for (const protocol of protocols) {
      await h2load(server.url, protocol, Math.min(2_000, n)); // warm-up: JIT, pools
      const cpu = cpuSecondsOf(server.pid);
      const { rps, ok } = await h2load(server.url, protocol, n);
      const us = ((cpuSecondsOf(server.pid) - cpu) * 1e6) / Math.max(ok, 1);
      const load = (await import("node:os")).loadavg()[0]?.toFixed(1);
      console.log(
        `rep ${rep} ${entry.name} ${protocol}: ${Math.round(rps)} req/s, ${ok}/${n} ok, server CPU ${us.toFixed(1)} µs/request, load ${load}`,
      );
      record(`${entry.name} ${protocol} req/s`, Math.round(rps));
      record(`${entry.name} ${protocol} µs/request`, Math.round(us * 10) / 10);
    }
    await server.stop();
  }
}
if (sink !== undefined) console.log(`\nOTLP export requests received: ${sink.requests()}`);
console.log("\nmedians (all values):");
for (const [key, values] of results) {
  console.log(`${key.padEnd(42)} ${median(values)}  (${values.join(", ")})`);
}
process.exit(0);
