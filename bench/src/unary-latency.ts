// SendMessage latency and throughput, a first measurement: one Switchboard server pinned to core
// 0, this client (connect-node) on core 1. Latency from a client-side histogram of sequential
// calls (one in flight); throughput with `--concurrency` calls in flight. Every answer is checked
// (a failed call throws), so the numbers are for successful calls only.
//
//   taskset -c 1 node --import tsx bench/src/unary-latency.ts [--store memory|sqlite]
//     [--protocol grpc|connect] [--calls 3000] [--concurrency 32]
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createNodeTransport, parseProtocol } from "@switchboard/client/node";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { startServer } from "./lib/servers.js";

const { values: args } = parseArgs({
  options: {
    store: { type: "string", default: "memory" },
    protocol: { type: "string", default: "grpc" },
    calls: { type: "string", default: "3000" },
    concurrency: { type: "string", default: "32" },
  },
});
const CALLS = Number(args.calls);
const CONCURRENCY = Number(args.concurrency);
if (args.store !== "memory" && args.store !== "sqlite")
  throw new TypeError("--store is memory or sqlite");
// Pinned to core 0 by the suite's own launcher; it resolves once the port accepts connections.
const server = await startServer(args.store === "sqlite" ? "switchboard-sqlite" : "switchboard");
try {
  const client = createClient(
    ChatService,
    createNodeTransport({
      baseUrl: server.url,
      protocol: parseProtocol(String(args.protocol)),
      httpVersion: "2",
    }),
  );
  const send = (i: number) =>
    client.sendMessage({ room: "bench", user: "bench", content: `message ${i}` });
  for (let i = 0; i < 500; i++) await send(i); // warm-up

  const latencies: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    await send(i);
    latencies.push(performance.now() - t0);
  }
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    (latencies[Math.floor((p / 100) * (latencies.length - 1))] as number).toFixed(2);

  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < CALLS * 3) await send(next++);
    }),
  );
  const rps = (CALLS * 3) / ((performance.now() - t0) / 1000);
  console.log(
    `SendMessage over ${args.protocol} (h2), store ${args.store}: sequential p50 ${q(50)} ms, p90 ${q(90)} ms, p99 ${q(99)} ms; ` +
      `${Math.round(rps)} calls/s with ${CONCURRENCY} in flight`,
  );
} finally {
  await server.stop();
}
process.exit(0);
