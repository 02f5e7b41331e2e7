// Fan-out benchmark: S gRPC SubscribeMessages streams to one room over C HTTP/2 connections, one
// publisher sending SendMessage open-loop at stepped rates. A step is sustained when every
// message reaches every subscriber and the p99 publish-to-delivery latency is ≤ 100 ms.
// The method is shared/PERFORMANCE.md's: server pinned to core 0, this generator to core 1.
//
//   taskset -c 1 node --import tsx bench/src/fanout.ts [--servers switchboard,seed-go]
//     [--subscribers 1000] [--connections 10] [--rates 10,25,50,100,200] [--step-s 4]
//
// Latency is measured from the publisher's send to the subscriber's receipt, both in this
// process, on a sample of 50 subscribers (decoding every message would load the generator).
import { type ChildProcess, spawn } from "node:child_process";
import http2 from "node:http2";
import net from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  MessageSchema,
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";

const { values: args } = parseArgs({
  options: {
    servers: { type: "string", default: "switchboard,seed-go" },
    subscribers: { type: "string", default: "1000" },
    connections: { type: "string", default: "10" },
    rates: { type: "string", default: "10,25,50,100,200,400" },
    "step-s": { type: "string", default: "4" },
    "seed-server": { type: "string", default: "/tmp/seed-go/seed-server" },
    // Every subscriber as one user: one JOIN instead of a JOIN per subscriber (presence storm).
    "one-user": { type: "boolean", default: false },
    // Write a V8 CPU profile of each Switchboard server into this directory (--cpu-prof).
    profile: { type: "string" },
  },
});
const SUBSCRIBERS = Number(args.subscribers);
const CONNECTIONS = Number(args.connections);
const RATES = String(args.rates).split(",").map(Number);
const STEP_MS = Number(args["step-s"]) * 1000;
const SAMPLED = 50;
const ROOM = "bench";
const root = join(import.meta.dirname, "..", "..");

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.end();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} did not open`);
}

function startServer(kind: string, port: number): ChildProcess {
  const pin = ["-c", "0"];
  if (kind === "seed-go") {
    return spawn("taskset", [...pin, String(args["seed-server"])], {
      env: { ...process.env, PORT: String(port) },
      stdio: "ignore",
    });
  }
  const store = kind === "switchboard-sqlite" ? "sqlite" : "memory";
  return spawn(
    "taskset",
    [
      ...pin,
      process.execPath,
      ...(args.profile === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", args.profile]),
      "--import",
      "tsx",
      join(root, "apps/server/src/server.ts"),
    ],
    {
      cwd: join(root, "apps/server"),
      env: {
        ...process.env,
        PORT: String(port),
        STORE: store,
        DATA_DIR: `/tmp/switchboard-bench-${port}`,
        LOG_LEVEL: "warn",
      },
      stdio: "ignore",
    },
  );
}

function envelope(payload: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, 5);
  return frame;
}

/** Splits a gRPC byte stream into message payloads. */
class EnvelopeReader {
  private buffer: Buffer = Buffer.alloc(0);
  constructor(private readonly onMessage: (payload: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    while (this.buffer.length >= 5) {
      const length = this.buffer.readUInt32BE(1);
      if (this.buffer.length < 5 + length) break;
      this.onMessage(this.buffer.subarray(5, 5 + length));
      this.buffer = this.buffer.subarray(5 + length);
    }
  }
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? Number.NaN
    : (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);

interface StepResult {
  rate: number;
  sent: number;
  expected: number;
  delivered: number;
  deliveriesPerSecond: number;
  p50: number;
  p99: number;
  sustained: boolean;
}

async function run(kind: string): Promise<StepResult[]> {
  const port = await freePort();
  const server = startServer(kind, port);
  try {
    await waitForPort(port);
    const url = `http://127.0.0.1:${port}`;
    const sessions = Array.from({ length: CONNECTIONS }, () =>
      http2.connect(url, { settings: { initialWindowSize: 1 << 20 } }),
    );
    for (const s of sessions) s.on("connect", () => s.setLocalWindowSize(16 << 20));
    let measuring = false;
    let delivered = 0;
    let latencies: number[] = [];
    let welcomed = 0;
    let lastActivity = performance.now();
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const sampled = i < SAMPLED;
      const stream = (sessions[i % CONNECTIONS] as http2.ClientHttp2Session).request({
        ":method": "POST",
        ":path": "/chat.ChatService/SubscribeMessages",
        "content-type": "application/grpc",
        te: "trailers",
      });
      let first = true;
      const reader = new EnvelopeReader((payload) => {
        lastActivity = performance.now();
        if (first) {
          first = false;
          welcomed++;
          return;
        }
        if (!measuring) return;
        // Only the publisher's messages count; JOIN/LEAVE of other subscribers do not.
        if (sampled) {
          const m = fromBinary(MessageSchema, payload);
          if (!m.content.startsWith("t:")) return;
          delivered++;
          latencies.push(performance.now() - Number(m.content.slice(2)));
        } else if (payload.includes("t:")) {
          delivered++;
        }
      });
      stream.on("data", (chunk: Buffer) => reader.push(chunk));
      stream.on("error", () => {});
      stream.end(
        envelope(
          toBinary(
            SubscribeRequestSchema,
            create(SubscribeRequestSchema, {
              room: ROOM,
              user: args["one-user"] ? "subscriber" : `sub-${i}`,
            }),
          ),
        ),
      );
    }
    // Wait until every subscriber is welcomed and the JOIN storm has been delivered.
    const settleDeadline = Date.now() + 60_000;
    while (
      (welcomed < SUBSCRIBERS || performance.now() - lastActivity < 1000) &&
      Date.now() < settleDeadline
    ) {
      await new Promise((r) => setTimeout(r, 200));
    }
    if (welcomed < SUBSCRIBERS)
      throw new Error(`${kind}: only ${welcomed}/${SUBSCRIBERS} subscribed`);
    console.log(
      `${kind.padEnd(20)} ${SUBSCRIBERS} subscribers settled in ${((Date.now() - settleDeadline + 60_000) / 1000).toFixed(1)} s`,
    );

    const publisher = http2.connect(url);
    let failed = 0;
    const publish = () => {
      const stream = publisher.request({
        ":method": "POST",
        ":path": "/chat.ChatService/SendMessage",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.on("trailers", (t) => {
        if (t["grpc-status"] !== "0") failed++;
      });
      stream.on("data", () => {});
      stream.on("error", () => failed++);
      const req = create(SendMessageRequestSchema, {
        room: ROOM,
        user: "publisher",
        content: `t:${performance.now()}`,
      });
      stream.end(envelope(toBinary(SendMessageRequestSchema, req)));
    };

    const results: StepResult[] = [];
    for (const rate of RATES) {
      delivered = 0;
      latencies = [];
      measuring = true;
      let sent = 0;
      const start = performance.now();
      // Open loop: the schedule does not wait for answers.
      await new Promise<void>((resolve) => {
        const tick = setInterval(() => {
          const elapsed = performance.now() - start;
          const due = Math.min(
            Math.floor((elapsed / 1000) * rate),
            Math.floor((STEP_MS / 1000) * rate),
          );
          while (sent < due) {
            publish();
            sent++;
          }
          if (elapsed >= STEP_MS) {
            clearInterval(tick);
            resolve();
          }
        }, 5);
      });
      const expected = sent * SUBSCRIBERS;
      const drainDeadline = performance.now() + 2000;
      while (delivered < expected && performance.now() < drainDeadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      measuring = false;
      const sorted = latencies.sort((a, b) => a - b);
      const result: StepResult = {
        rate,
        sent,
        expected,
        delivered,
        deliveriesPerSecond: Math.round(delivered / (STEP_MS / 1000)),
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        sustained: delivered >= expected && failed === 0 && percentile(sorted, 99) <= 100,
      };
      results.push(result);
      console.log(
        `${kind.padEnd(20)} rate ${String(rate).padStart(5)}/s  deliveries/s ${String(result.deliveriesPerSecond).padStart(8)}  ` +
          `delivered ${delivered}/${expected}  p50 ${result.p50.toFixed(1)} ms  p99 ${result.p99.toFixed(1)} ms  ${result.sustained ? "sustained" : "NOT sustained"}${failed ? ` (${failed} sends failed)` : ""}`,
      );
      if (!result.sustained) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    publisher.close();
    for (const s of sessions) s.destroy();
    return results;
  } finally {
    // SIGINT lets the server close and write its profile; SIGKILL if it takes too long.
    server.kill(args.profile === undefined ? "SIGKILL" : "SIGINT");
    const timer = setTimeout(() => server.kill("SIGKILL"), 10_000);
    await new Promise((resolve) => server.once("exit", resolve));
    clearTimeout(timer);
  }
}

const summary: Record<string, number> = {};
for (const kind of String(args.servers).split(",")) {
  const results = await run(kind);
  const best = results.filter((r) => r.sustained).at(-1);
  summary[kind] = best?.deliveriesPerSecond ?? 0;
}
console.log(`\nhighest sustained deliveries/s at ${SUBSCRIBERS} subscribers:`, summary);
process.exit(0);
