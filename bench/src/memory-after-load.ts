// Memory after load (issue 10, item 6): does the server give back what a burst of streams and
// floods took, or does it keep it? One server (STORE from --store, default sqlite, so history
// is on disk and not in the heap) with a heap probe preloaded (lib/heap-probe.ts: SIGUSR2 →
// forced GC, memoryUsage, heap snapshot). Two rounds of: 1,000 SubscribeMessages streams from one
// identity opened and closed, then floods (unary calls over gRPC and Connect, bad requests, new
// connections). After each round: 5 s idle, RSS and heap used from /metrics (no forced GC), then
// the probe. Prints the figures and the heap growth by constructor between the snapshots.
//
//   node --import tsx bench/src/memory-after-load.ts [--store sqlite|memory] [--keep DIR]
//     [--figures-only]
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { track } from "./lib/children.js";
import { SubscriberSet } from "./lib/fanout-load.js";
import { envelope, grpcHeaders } from "./lib/grpc-wire.js";
import { diff, summarize, total } from "./lib/heap-snapshot.js";
import { freePort, ROOT, rssOf, waitForPort } from "./lib/servers.js";
import { sleep } from "./lib/stats.js";

const { values: args } = parseArgs({
  options: {
    store: { type: "string", default: "sqlite" },
    streams: { type: "string", default: "1000" },
    keep: { type: "string" },
    /** Figures only: no heap snapshots (making one costs native memory, which shows in RSS). */
    "figures-only": { type: "boolean", default: false },
  },
});
const STREAMS = Number(args.streams);
const MiB = 2 ** 20;

const dir = args.keep ?? mkdtempSync(join(tmpdir(), "switchboard-memory-"));
const port = await freePort();
const server: ChildProcess = track(
  spawn(
    process.execPath,
    [
      "--expose-gc",
      "--import",
      "tsx",
      "--import",
      join(ROOT, "bench/src/lib/heap-probe.ts"),
      "src/server.ts",
    ],
    {
      cwd: join(ROOT, "apps/server"),
      env: {
        ...process.env,
        PORT: String(port),
        STORE: args.store,
        DATA_DIR: join(dir, "data"),
        LOG_LEVEL: "warn",
        HEAP_PROBE_DIR: dir,
        HEAP_PROBE_SNAPSHOT: args["figures-only"] ? "0" : "1",
      },
      stdio: ["ignore", "ignore", "inherit"],
    },
  ),
);
const url = `http://127.0.0.1:${port}`;
await waitForPort(port);

/** RSS and V8 heap used as the server reports them in /metrics, bytes. */
async function metrics(): Promise<{ rss: number; heapUsed: number; openStreams: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) =>
    Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  return {
    rss: value("process_resident_memory_bytes"),
    heapUsed: value("nodejs_heap_size_used_bytes"),
    openStreams: value("switchboard_subscribers"),
  };
}

let probes = 0;
/** SIGUSR2: forced GC and a heap snapshot; resolves with memoryUsage before and after the GC. */
async function probe(): Promise<{
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  snapshot: string | undefined;
}> {
  const file = join(dir, `probe-${probes++}.json`);
  server.kill("SIGUSR2");
  for (let i = 0; i < 600 && !existsSync(file); i++) await sleep(100);
  await sleep(200);
  return JSON.parse(readFileSync(file, "utf8"));
}

/** `n` calls on `concurrency` lanes. */
async function flood(n: number, concurrency: number, call: (i: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await call(next++).catch(() => {});
    }),
  );
}

/** One raw gRPC call on `session`: resolves with the grpc-status. */
function grpcCall(session: http2.ClientHttp2Session, path: string, body: Uint8Array) {
  return new Promise<string>((resolve) => {
    const stream = session.request({ ...grpcHeaders("x"), ":path": path });
    let status = "none";
    stream.on("response", (h) => {
      status = String(h["grpc-status"] ?? status);
    });
    stream.on("trailers", (t) => {
      status = String(t["grpc-status"] ?? status);
    });
    stream.on("error", () => {});
    stream.on("close", () => resolve(status));
    stream.resume();
    stream.end(body);
  });
}

const sendBody = (i: number) =>
  envelope(
    toBinary(
      SendMessageRequestSchema,
      create(SendMessageRequestSchema, {
        room: `flood-${i % 20}`,
        user: "flooder",
        content: `m${i}`,
      }),
    ),
  );

/** One round of load: streams opened and closed, then the floods. */
async function round(label: string): Promise<void> {
  const t0 = Date.now();
  const set = new SubscriberSet(url, {
    subscribers: STREAMS,
    connections: Math.ceil(STREAMS / 100),
    room: "load",
    oneUser: false,
  });
  try {
    await set.settle(120_000);
  } catch (err) {
    // A refused stream is a finding too (a slot of MAX_STREAMS_PER_IDENTITY never given back).
    console.log(
      `${label}: ${err instanceof Error ? err.message : String(err)}; ended: ${JSON.stringify([...set.ended])}`,
    );
  }
  set.close();
  for (let i = 0; i < 100 && (await metrics()).openStreams > 0; i++) await sleep(100);
  const session = http2.connect(url);
  session.on("error", () => {});
  // Unary floods: SendMessage over gRPC (one connection) and Connect JSON over HTTP/1.1.
  await flood(5_000, 50, (i) => grpcCall(session, "/chat.ChatService/SendMessage", sendBody(i)));
  await flood(2_000, 20, (i) =>
    fetch(`${url}/chat.ChatService/SendMessage`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ room: `flood-${i % 20}`, user: "flooder", content: `j${i}` }),
    }).then((r) => r.arrayBuffer()),
  );
  // Bad requests: malformed protobuf, an unknown method, an oversized body, bad JSON.
  const oversized = envelope(new Uint8Array(70_000));
  await flood(2_000, 50, (i) => {
    switch (i % 4) {
      case 0:
        return grpcCall(
          session,
          "/chat.ChatService/SendMessage",
          envelope(Buffer.from([0x0a, 50, 1])),
        );
      case 1:
        return grpcCall(session, "/chat.ChatService/NoSuchMethod", sendBody(i));
      case 2:
        return grpcCall(session, "/chat.ChatService/SendMessage", oversized);
      default:
        return fetch(`${url}/chat.ChatService/SendMessage`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{not json",
        }).then((r) => r.arrayBuffer());
    }
  });
  session.close();
  // New connections: 500 short-lived h2c sessions, one call each.
  await flood(500, 20, async (i) => {
    const s = http2.connect(url);
    s.on("error", () => {});
    try {
      await grpcCall(s, "/chat.ChatService/SendMessage", sendBody(i));
    } finally {
      s.close();
    }
  });
  console.log(
    `${label}: ${STREAMS} streams opened and closed, 9,500 calls in ${(Date.now() - t0) / 1000} s`,
  );
}

const fmt = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const rows: string[] = [];
async function measure(label: string) {
  await sleep(5_000);
  const m = await metrics();
  const p = await probe();
  const line = `| ${label} | ${fmt(m.rss)} | ${fmt(m.heapUsed)} | ${fmt(p.after.rss)} | ${fmt(p.after.heapUsed)} | ${m.openStreams} |`;
  rows.push(line);
  console.log(line);
  return p.snapshot;
}

try {
  // Fresh, then a warm-up round: lazily loaded code and first-use caches belong to the baseline.
  await measure("fresh start, before any load");
  await round("warm-up").catch(() => {});
  const snapshots = [await measure("baseline (after a warm-up round)")];
  await round("round 1");
  snapshots.push(await measure("after round 1, 5 s idle"));
  await round("round 2");
  snapshots.push(await measure("after round 2, 5 s idle"));
  console.log(
    "\n| point | RSS | heap used | RSS after GC | heap used after GC | subscribers |\n|---|---|---|---|---|---|",
  );
  for (const row of rows) console.log(row);
  const [base, one, two] = args["figures-only"] ? [] : snapshots.map((s) => summarize(s as string));
  for (const [label, a, b] of [
    ["baseline → after round 1", base, one],
    ["after round 1 → after round 2", one, two],
  ] as const) {
    if (a === undefined || b === undefined) continue;
    console.log(
      `\nHeap growth ${label} (self size of live objects after GC): ${fmt(total(b) - total(a))}`,
    );
    console.log("| constructor | count | self size | retained size |\n|---|---|---|---|");
    for (const d of diff(a, b).slice(0, 15)) {
      console.log(
        `| ${d.name} | ${d.count} | ${(d.selfSize / 1024).toFixed(1)} KiB | ${(d.retainedSize / 1024).toFixed(1)} KiB |`,
      );
    }
  }
  console.log(`\nprocess RSS now ${fmt(rssOf(server.pid as number))}; snapshots in ${dir}`);
} finally {
  server.kill("SIGKILL");
  if (args.keep === undefined) rmSync(dir, { recursive: true, force: true });
}
