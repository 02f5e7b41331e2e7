// Throw-away Redis servers for the scenarios that run Switchboard on Redis: one redis-server on a
// free loopback port, no persistence, deleted when stopped.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { track } from "./children.js";
import { freePort, waitForPort } from "./servers.js";

/** A redis-server the bench started. */
export interface RunningRedis {
  /** `redis://127.0.0.1:<port>` (the server's `STORE`). */
  url: string;
  port: number;
  /** The redis-server process (its CPU time: servers.ts `cpuSecondsOf`). */
  pid: number;
  /** SIGKILL, then the directory is deleted. */
  stop(): Promise<void>;
}

/**
 * Starts a throw-away redis-server (no RDB, no AOF) on a free loopback port, in a temporary
 * directory; it inherits this process's cores. Resolves once the port accepts connections.
 * @throws when redis-server is not installed (Debian: `apt-get install redis-server`) or the
 *   port does not open within 30 s.
 */
export async function startRedis(): Promise<RunningRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "switchboard-bench-redis-"));
  const child: ChildProcess = track(
    spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { cwd: dir, stdio: "ignore" },
    ),
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const failed = new Promise<never>((_, reject) => {
    child.once("error", (err) => reject(new Error(`cannot start redis-server: ${err.message}`)));
  });
  failed.catch(() => {});
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.race([failed, waitForPort(port)]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `redis://127.0.0.1:${port}`, port, pid: child.pid as number, stop };
}
