// Starting the servers under test: Switchboard and its peers, each pinned to core 0.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";

/** The repository's root directory. */
export const ROOT = join(import.meta.dirname, "..", "..", "..");

/** Every server the suite knows. */
export const SERVER_KINDS = [
  "switchboard",
  "switchboard-sqlite",
  "grpc-js",
  "seed-go",
  "h2-ceiling",
  "fastify-json",
] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];

/** A server under test, listening on 127.0.0.1. */
export interface RunningServer {
  kind: ServerKind;
  port: number;
  url: string;
  /** The server process (taskset execs, so this is the server itself). */
  pid: number;
  /** Resident memory now, bytes (VmRSS of /proc/<pid>/status). */
  rss(): number;
  /** Stops the server: SIGINT (a CPU profile is written), SIGKILL after 10 s. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Write a V8 CPU profile (--cpu-prof) into this directory; Node servers only. */
  cpuProfDir?: string | undefined;
  /** Path of the seed's grpc-go server binary. */
  seedServer?: string | undefined;
  /**
   * Run this entry file as "switchboard" instead of the working tree's src/server.ts: the
   * server of another commit, from a git worktree (compare-builds.ts).
   */
  switchboardSource?: string | undefined;
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

const PEER_FILES: Partial<Record<ServerKind, string>> = {
  "grpc-js": "src/peers/grpc-js-peer.ts",
  "h2-ceiling": "src/peers/h2-ceiling.ts",
  "fastify-json": "src/peers/fastify-json.ts",
};

function spawnServer(kind: ServerKind, port: number, options: StartOptions): ChildProcess {
  const pin = ["-c", "0"];
  if (kind === "seed-go") {
    return spawn("taskset", [...pin, options.seedServer ?? "/tmp/seed-go/seed-server"], {
      env: { ...process.env, PORT: String(port) },
      stdio: "ignore",
    });
  }
  const profile =
    options.cpuProfDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", options.cpuProfDir];
  const peer = PEER_FILES[kind];
  if (peer !== undefined) {
    return spawn("taskset", [...pin, process.execPath, ...profile, "--import", "tsx", peer], {
      cwd: join(ROOT, "bench"),
      env: { ...process.env, PORT: String(port) },
      stdio: "ignore",
    });
  }
  return spawn(
    "taskset",
    [
      ...pin,
      process.execPath,
      ...profile,
      "--import",
      "tsx",
      options.switchboardSource ?? "src/server.ts",
    ],
    {
      cwd: join(ROOT, "apps/server"),
      env: {
        ...process.env,
        PORT: String(port),
        STORE: kind === "switchboard-sqlite" ? "sqlite" : "memory",
        DATA_DIR: `/tmp/switchboard-bench-${port}`,
        LOG_LEVEL: "warn",
        // The peers have no per-identity stream limit; every bench stream comes from 127.0.0.1.
        MAX_STREAMS_PER_IDENTITY: "0",
      },
      stdio: "ignore",
    },
  );
}

/** Starts a server pinned to core 0 and resolves once it accepts connections. */
export async function startServer(
  kind: ServerKind,
  options: StartOptions = {},
): Promise<RunningServer> {
  const port = await freePort();
  const child = spawnServer(kind, port, options);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await waitForPort(port);
  const pid = child.pid as number;
  return {
    kind,
    port,
    url: `http://127.0.0.1:${port}`,
    pid,
    rss: () => rssOf(pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(options.cpuProfDir === undefined ? "SIGKILL" : "SIGINT");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
