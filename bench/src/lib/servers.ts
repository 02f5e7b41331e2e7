// Starting the servers under test: Switchboard and its peers, each pinned to core 0, and reading
// what each one costs (CPU time from /proc, event-loop delay and GC from lib/server-probe.ts).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { accessSync, constants as fsConstants, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { track } from "./children.js";
import {
  type HeapReading,
  PROBE_ENV,
  PROBE_HEAP_READING,
  PROBE_HEAP_REQUEST,
  PROBE_READING,
  PROBE_REQUEST,
  type ProbeReading,
} from "./server-probe.js";

/** The repository's root directory. */
export const ROOT = join(import.meta.dirname, "..", "..", "..");

/** Every server the suite knows. */
export const SERVER_KINDS = [
  "switchboard",
  "switchboard-sqlite",
  "plain-grpc-js",
  "grpc-js-rooms",
  "seed-go",
  "h2-ceiling",
  "fastify-json",
] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];

/** What the server's own /metrics said about a step (Switchboard only; prom-client's figures). */
export interface OwnMetrics {
  /** nodejs_eventloop_lag_max_seconds, in ms: the largest delay since the previous scrape. */
  loopMaxMs: number;
  /** Sum of nodejs_gc_duration_seconds over every kind, since start, ms. */
  gcMs: number;
  /** Count of nodejs_gc_duration_seconds over every kind, since start. */
  gcCount: number;
}

/** What a server has cost so far, read at one moment. */
export interface ServerSample {
  /** performance.now() of the runner when read, ms. */
  at: number;
  /** utime + stime of the server process, every thread, seconds (/proc/<pid>/stat). */
  cpuSeconds: number;
  /** The preloaded probe's reading (Node servers only). */
  probe?: ProbeReading | undefined;
  /** The server's own /metrics (Switchboard only). */
  own?: OwnMetrics | undefined;
}

/** A server under test, listening on 127.0.0.1. */
export interface RunningServer {
  kind: ServerKind;
  port: number;
  url: string;
  /** The server process (taskset execs, so this is the server itself). */
  pid: number;
  /** Resident memory now, bytes (VmRSS of /proc/<pid>/status). */
  rss(): number;
  /**
   * The live heap: process.memoryUsage() before and after two forced full GCs (Node servers,
   * through the probe; undefined for seed-go, whose Go heap cannot be read from outside).
   */
  heap(): Promise<HeapReading | undefined>;
  /**
   * CPU time, loop delay and GC now; the probe's loop delay and /metrics' lag max reset. At a
   * step's start the CPU time is read last and at its end first (`cpuFirst`), so the scrape and
   * the probe's answer are not counted in the step's CPU time.
   */
  sample(cpuFirst?: boolean): Promise<ServerSample>;
  /** Stops the server: SIGINT (a CPU profile is written), SIGKILL after 10 s. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Write a V8 CPU profile (--cpu-prof) into this directory; Node servers only. */
  cpuProfDir?: string | undefined;
  /** Path of the seed's grpc-go server binary (default: the SEED_GO_BIN environment variable). */
  seedServer?: string | undefined;
  /**
   * Run this entry file as "switchboard" instead of the working tree's src/server.ts: the
   * server of another commit, from a git worktree (compare-builds.ts).
   */
  switchboardSource?: string | undefined;
  /**
   * The cores the server may run on, as taskset's list (default "0": the server pinned to core 0,
   * the runner on core 1). The whole-machine scenario gives every process both cores.
   */
  cores?: string | undefined;
  /** Environment set last for the server (e.g. WORKERS and STORE, or GOMAXPROCS for seed-go). */
  env?: Record<string, string> | undefined;
}

/**
 * Whether the seed's grpc-go server can be started: its binary comes from `--seed-server` or
 * SEED_GO_BIN (bench/README.md). Returns the reason when it cannot.
 */
export function seedGoUnavailable(options: StartOptions): string | undefined {
  const bin = options.seedServer ?? process.env.SEED_GO_BIN;
  if (bin === undefined || bin === "") return "not available: SEED_GO_BIN is not set";
  try {
    accessSync(bin, fsConstants.X_OK);
    return undefined;
  } catch {
    return "not available: SEED_GO_BIN is not an executable file";
  }
}

/**
 * Raises this process's open-file limit (inherited by the servers it starts) to the hard limit,
 * and the hard limit to 1,048,576 where allowed (root): 100,000 idle streams take 1,000
 * connections on each side, and more with fewer streams per connection. Uses util-linux prlimit.
 * @returns the soft limit now (NaN when prlimit is missing).
 */
export function raiseFileLimit(): number {
  const pid = String(process.pid);
  const read = () =>
    execFileSync(
      "prlimit",
      ["--pid", pid, "--nofile", "--raw", "--noheadings", "-o", "SOFT,HARD"],
      {
        encoding: "utf8",
      },
    )
      .trim()
      .split(/\s+/)
      .map(Number);
  try {
    const [soft, hard] = read() as [number, number];
    if (soft >= 1_048_576) return soft;
    try {
      execFileSync("prlimit", ["--pid", pid, "--nofile=1048576:1048576"], { stdio: "ignore" });
    } catch {
      execFileSync("prlimit", ["--pid", pid, `--nofile=${hard}:${hard}`], { stdio: "ignore" });
    }
    return read()[0] as number;
  } catch {
    return Number.NaN;
  }
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/** Resolves once `port` accepts connections. */
export async function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
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

/** Resident memory of a process, bytes. */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? Number.NaN) * 1024;
}

let clockTicks: number | undefined;
/** CPU time of a process, every thread, seconds: (utime + stime) / CLK_TCK from /proc/<pid>/stat. */
export function cpuSecondsOf(pid: number): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces): state is the 3rd field overall,
  // utime the 14th, stime the 15th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/**
 * CPU time of a process and every process below it (WORKERS=N: the primary and its workers),
 * seconds. A child that exits between two readings takes its time with it: read around steps of
 * a server whose processes all live through the run.
 */
export function treeCpuSecondsOf(pid: number): number {
  let total = 0;
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    try {
      total += cpuSecondsOf(p);
      const children = readFileSync(`/proc/${p}/task/${p}/children`, "utf8").trim();
      if (children !== "") stack.push(...children.split(" ").map(Number));
    } catch {
      // The process has exited.
    }
  }
  return total;
}

/** Reads prom-client's event-loop and GC figures from a /metrics text. */
export function parseOwnMetrics(text: string): OwnMetrics | undefined {
  const lag = /^nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1];
  if (lag === undefined) return undefined;
  let gcSeconds = 0;
  let gcCount = 0;
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_(sum|count)\{[^}]*\} (\S+)$/gm)) {
    if (m[1] === "sum") gcSeconds += Number(m[2]);
    else gcCount += Number(m[2]);
  }
  return { loopMaxMs: Number(lag) * 1000, gcMs: gcSeconds * 1000, gcCount };
}

async function scrapeOwnMetrics(url: string): Promise<OwnMetrics | undefined> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
    return res.ok ? parseOwnMetrics(await res.text()) : undefined;
  } catch {
    return undefined;
  }
}

const PEER_FILES: Partial<Record<ServerKind, string>> = {
  "plain-grpc-js": "src/peers/plain-grpc-js.ts",
  "grpc-js-rooms": "src/peers/grpc-js-peer.ts",
  "h2-ceiling": "src/peers/h2-ceiling.ts",
  "fastify-json": "src/peers/fastify-json.ts",
};

const PROBE = pathToFileURL(join(import.meta.dirname, "server-probe.ts")).href;

function spawnServer(kind: ServerKind, port: number, options: StartOptions): ChildProcess {
  const pin = ["-c", options.cores ?? "0"];
  if (kind === "seed-go") {
    const unavailable = seedGoUnavailable(options);
    if (unavailable !== undefined) throw new Error(`seed-go ${unavailable}`);
    return spawn("taskset", [...pin, (options.seedServer ?? process.env.SEED_GO_BIN) as string], {
      env: { ...process.env, PORT: String(port), ...options.env },
      stdio: ["ignore", "ignore", "pipe"],
    });
  }
  const node = [
    process.execPath,
    ...(options.cpuProfDir === undefined
      ? []
      : ["--cpu-prof", "--cpu-prof-dir", options.cpuProfDir]),
    "--import",
    "tsx",
    "--import",
    PROBE,
  ];
  // An IPC channel for the probe's readings; taskset execs node, which keeps the channel's fd.
  // stderr is read (its tail is the reason a server that exits at start-up gives).
  const stdio = ["ignore", "ignore", "pipe", "ipc"] as const;
  const peer = PEER_FILES[kind];
  if (peer !== undefined) {
    return spawn("taskset", [...pin, ...node, peer], {
      cwd: join(ROOT, "bench"),
      env: { ...process.env, PORT: String(port), [PROBE_ENV]: "1" },
      stdio: [...stdio],
    });
  }
  return spawn("taskset", [...pin, ...node, options.switchboardSource ?? "src/server.ts"], {
    cwd: join(ROOT, "apps/server"),
    env: {
      ...process.env,
      PORT: String(port),
      [PROBE_ENV]: "1",
      STORE: kind === "switchboard-sqlite" ? "sqlite" : "memory",
      DATA_DIR: `/tmp/switchboard-bench-${port}`,
      LOG_LEVEL: "warn",
      // The peers have no per-identity stream or connection limit; every bench stream comes
      // from 127.0.0.1 (100,000 idle streams take 1,000 connections).
      MAX_STREAMS_PER_IDENTITY: "0",
      MAX_CONNECTIONS_PER_IP: "0",
      ...options.env,
    },
    stdio: [...stdio],
  });
}

/** Bytes of a server's stderr kept: the tail that says why it stopped. */
const STDERR_TAIL = 2048;

/** Keeps the last STDERR_TAIL bytes of a child's stderr (and keeps the pipe drained). */
function stderrTail(child: ChildProcess): () => string {
  let tail = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (text: string) => {
    tail = (tail + text).slice(-STDERR_TAIL);
  });
  return () => tail.trim();
}

/**
 * Asks a Node server's preloaded probe for a reading of `type` (its answer is `answerType`);
 * undefined after `timeoutMs` or without a channel.
 */
function askProbe<R extends { type: string; id: number }>(
  child: ChildProcess,
  id: number,
  type: string,
  answerType: R["type"],
  timeoutMs = 3000,
): Promise<R | undefined> {
  if (!child.connected) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const onMessage = (m: Partial<R>) => {
      if (m?.type !== answerType || m.id !== id) return;
      done(m as R);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const done = (reading: R | undefined) => {
      clearTimeout(timer);
      child.off("message", onMessage);
      resolve(reading);
    };
    child.on("message", onMessage);
    child.send({ type, id }, (err) => {
      if (err) done(undefined);
    });
  });
}

/** Starts a server pinned to core 0 (or `options.cores`) and resolves once it accepts connections. */
export async function startServer(
  kind: ServerKind,
  options: StartOptions = {},
): Promise<RunningServer> {
  const port = await freePort();
  const child = track(spawnServer(kind, port, options));
  child.on("error", () => {});
  // The runner must not wait for a server's channel to exit.
  child.channel?.unref();
  const tail = stderrTail(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // A server that exits before it listens (a refused configuration) fails at once, with its
  // own words; one that never listens fails after waitForPort's timeout.
  const startFailed = exited.then(async () => {
    await new Promise((r) => setTimeout(r, 50)); // the last stderr chunk
    const how =
      child.exitCode !== null ? `exit code ${child.exitCode}` : `signal ${child.signalCode}`;
    throw new Error(
      `${kind} stopped before it listened (${how})${tail() === "" ? "" : `: ${tail()}`}`,
    );
  });
  startFailed.catch(() => {});
  try {
    await Promise.race([
      waitForPort(port).catch((err: Error) => {
        throw new Error(`${kind}: ${err.message}${tail() === "" ? "" : `: ${tail()}`}`);
      }),
      startFailed,
    ]);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  const pid = child.pid as number;
  const url = `http://127.0.0.1:${port}`;
  const ownMetrics = kind === "switchboard" || kind === "switchboard-sqlite";
  let probes = 0;
  return {
    kind,
    port,
    url,
    pid,
    rss: () => rssOf(pid),
    // Two full GCs of a heap with 100,000 streams take a while: 60 s.
    heap: () =>
      askProbe<HeapReading>(child, ++probes, PROBE_HEAP_REQUEST, PROBE_HEAP_READING, 60_000),
    async sample(cpuFirst = false) {
      const before = cpuFirst
        ? { at: performance.now(), cpuSeconds: treeCpuSecondsOf(pid) }
        : undefined;
      const own = ownMetrics ? await scrapeOwnMetrics(url) : undefined;
      const probe = await askProbe<ProbeReading>(child, ++probes, PROBE_REQUEST, PROBE_READING);
      const cpu = before ?? { at: performance.now(), cpuSeconds: treeCpuSecondsOf(pid) };
      return { ...cpu, probe, own };
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(options.cpuProfDir === undefined ? "SIGKILL" : "SIGINT");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
