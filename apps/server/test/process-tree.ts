// A command run through pnpm, as a supervisor runs it (`pnpm start`, `pnpm --silent cli …`), and
// the processes below it: signal pnpm alone, then check that it exited with the documented code
// and left no process behind. Linux only (reads /proc).
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { REPO_DIR } from "./harness.js";

/** How a process ended, and what it printed. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The ids of every live process below `pid` (children, their children, …), read from /proc. */
export function descendantsOf(pid: number): number[] {
  const found: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // it has exited
    }
    for (const task of tasks) {
      let children = "";
      try {
        children = readFileSync(`/proc/${p}/task/${task}/children`, "utf8").trim();
      } catch {
        // the thread has exited
      }
      if (children === "") continue;
      for (const child of children.split(" ").map(Number)) {
        found.push(child);
        stack.push(child);
      }
    }
  }
  return found;
}

/** True while `pid` is a process that has not exited (a zombie has exited). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // pid (comm) state …: comm may contain spaces and parentheses, the state follows the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The command line of `pid`, for failure messages ("" once it has exited). */
export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
  } catch {
    return "";
  }
}

/**
 * `pnpm ARGS` in the repository, in a process group of its own (so that a test's signal goes to
 * pnpm alone, as `kill PID` or a supervisor sends it, and so that {@link PnpmRun.killGroup} can
 * clean up what a failed test left).
 */
export class PnpmRun {
  stdout = "";
  stderr = "";
  readonly exited: Promise<RunResult>;
  readonly child: ChildProcess;
  private readonly waiters = new Set<() => void>();

  constructor(
    args: string[],
    env: Record<string, string> = {},
    stdin: "ignore" | "pipe" = "ignore",
  ) {
    this.child = spawn("pnpm", args, {
      cwd: REPO_DIR,
      detached: true,
      env: { ...process.env, ...env },
      stdio: [stdin, "pipe", "pipe"],
    });
    const wake = () => {
      for (const waiter of this.waiters) waiter();
    };
    this.child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stdout += chunk;
      wake();
    });
    this.child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
      wake();
    });
    this.exited = new Promise((resolve) => {
      this.child.once("close", (code, signal) => {
        wake();
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /** pnpm's own process id. */
  get pid(): number {
    return this.child.pid as number;
  }

  /**
   * Resolves when `stream` matches `pattern`; fails after `timeoutMs`, or when pnpm exits first,
   * naming what did not appear and showing the output so far.
   */
  waitFor(pattern: RegExp, stream: "stdout" | "stderr", timeoutMs = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pattern.test(this[stream])) {
          done();
          resolve();
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          done();
          reject(new Error(`pnpm exited before ${pattern} on ${stream}:\n${this.output()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${pattern} on ${stream} within ${timeoutMs} ms:\n${this.output()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /**
   * Sends `signal` to pnpm's process only and resolves with how pnpm ended; fails after
   * `timeoutMs` naming the processes still running.
   */
  async signal(signal: NodeJS.Signals, timeoutMs = 20_000): Promise<RunResult> {
    process.kill(this.pid, signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const left = [this.pid, ...descendantsOf(this.pid)].map((p) => `${p} ${commandOf(p)}`);
        reject(new Error(`pnpm still running ${timeoutMs} ms after ${signal}: ${left.join("; ")}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL to every process left in pnpm's process group (a failed test's leftovers). */
  killGroup(): void {
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {
      // nothing left
    }
  }

  private output(): string {
    return `stdout:\n${this.stdout}\nstderr:\n${this.stderr}`;
  }
}

/**
 * Resolves once none of `pids` runs; fails after `timeoutMs` naming those still running (an
 * orphan keeps its command line: `node apps/server/scripts/start.ts`, …).
 */
export async function untilGone(pids: readonly number[], timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = pids.filter(isRunning);
    if (left.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(
        `still running ${timeoutMs} ms after pnpm exited: ${left.map((p) => `${p} ${commandOf(p)}`).join("; ")}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
