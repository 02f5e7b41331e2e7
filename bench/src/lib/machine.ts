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
