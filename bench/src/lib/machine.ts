// The machine description written beside every result.
import { execFileSync } from "node:child_process";
import { cpus, loadavg } from "node:os";

const run = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
};

/** nproc, CPU model, memory (free -h), kernel, Node version, load average now. */
export function describeMachine(): Record<string, string> {
  return {
    nproc: run("nproc", ["--all"]),
    cpu: cpus()[0]?.model ?? "unknown",
    memory: run("free", ["-h"]).split("\n")[1]?.replace(/\s+/g, " ") ?? "unknown",
    kernel: run("uname", ["-sr"]),
    node: process.version,
    h2load: run("h2load", ["--version"]).split("\n")[0] ?? "unknown",
    loadAtStart: loadNow(),
  };
}

/** The 1/5/15-minute load average, as `uptime` prints it. */
export function loadNow(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(", ");
}

/** The cores this process may run on now, as taskset's list ("0,1"). */
export function ownCores(): string {
  const out = execFileSync("taskset", ["-c", "-p", String(process.pid)], { encoding: "utf8" });
  return out.slice(out.lastIndexOf(":") + 1).trim();
}

/**
 * Gives every thread of this process the cores in `cores` (taskset's list, e.g. "0,1"); the
 * processes it starts afterwards inherit them. `pnpm bench` starts the runner on core 1 only.
 */
export function setOwnCores(cores: string): void {
  execFileSync("taskset", ["-a", "-p", "-c", cores, String(process.pid)], { stdio: "ignore" });
}
