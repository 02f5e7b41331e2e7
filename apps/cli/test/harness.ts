import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../server/test/free-port.js";
import { SERVER_COMMAND, track } from "../../server/test/harness.js";

/** apps/server, where the server runs. */
const SERVER_DIR = fileURLToPath(new URL("../../server", import.meta.url));
/** The CLI's bin shim, run as users run it. */
const CLI_BIN = fileURLToPath(new URL("../bin/switchboard.js", import.meta.url));

/** The line that says the server accepts connections. */
const READY_MSG = "switchboard listening";

export { freePort };

/** How a process ended, and what it printed. */
export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** How long a test waits for a process to exit before it fails saying so, ms. */
const EXIT_MS = 30_000;

/** A child process whose output is collected, and that a test can wait on. */
export class Child {
  stdout = "";
  stderr = "";
  private readonly exit: Promise<Result>;
  private readonly waiters = new Set<() => void>();

  /** `what` names the process in the messages of a wait that fails (`switchboard rooms`, …). */
  constructor(
    readonly process: ChildProcess,
    private readonly what = "the process",
  ) {
    process.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stdout += chunk;
      for (const wake of this.waiters) wake();
    });
    process.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
      for (const wake of this.waiters) wake();
    });
    // Stopped after the test file if it still runs then (the server harness's one set).
    track(process);
    this.exit = new Promise((resolve) => {
      process.on("close", (code) => {
        for (const wake of this.waiters) wake();
        resolve({ code, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /**
   * Resolves with how the process ended.
   * @throws after 30 s, naming the process and what it printed.
   */
  get exited(): Promise<Result> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `${this.what} did not exit within ${EXIT_MS} ms:\n${this.stdout}\n${this.stderr}`,
            ),
          ),
        EXIT_MS,
      );
    });
    return Promise.race([this.exit, late]).finally(() => clearTimeout(timer));
  }

  /** Resolves when stdout (or stderr) matches `pattern`; rejects after `timeoutMs` or on exit. */
  waitFor(pattern: RegExp, stream: "stdout" | "stderr" = "stdout", timeoutMs = 15_000) {
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pattern.test(this[stream])) {
          done();
          resolve();
        } else if (this.process.exitCode !== null || this.process.signalCode !== null) {
          done();
          reject(
            new Error(
              `${this.what} exited before ${pattern} on ${stream}:\n${this.stdout}\n${this.stderr}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `no ${pattern} on ${stream} of ${this.what} in ${timeoutMs} ms:\n${this.stdout}\n${this.stderr}`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Sends `signal` and resolves with how the process ended. */
  stop(signal: NodeJS.Signals = "SIGINT"): Promise<Result> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill(signal);
    }
    return this.exited;
  }
}

/**
 * A real server process on a free port of 127.0.0.1. `restart()` starts a new process on the
 * same port and DATA_DIR, so a SQLite store keeps its messages.
 */
export class ServerProcess {
  private child: Child | undefined;

  private constructor(
    readonly port: number,
    private readonly env: Record<string, string>,
    private readonly dataDir: string,
  ) {}

  /** `http://127.0.0.1:PORT` */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts a server with STORE=`store` and resolves when it accepts connections. */
  static async start(store: "memory" | "sqlite" = "memory"): Promise<ServerProcess> {
    const dataDir = mkdtempSync(join(tmpdir(), "switchboard-cli-test-"));
    const port = await freePort();
    const server = new ServerProcess(
      port,
      { PORT: String(port), HOST: "127.0.0.1", STORE: store, DATA_DIR: dataDir },
      dataDir,
    );
    await server.restart();
    return server;
  }

  /** Starts the process again (after {@link ServerProcess.stop}). */
  async restart(): Promise<void> {
    const child = new Child(
      spawn(process.execPath, SERVER_COMMAND, {
        cwd: SERVER_DIR,
        env: { ...process.env, LOG_LEVEL: "info", ...this.env },
        stdio: ["ignore", "pipe", "pipe"],
      }),
      "the server",
    );
    this.child = child;
    await child.waitFor(new RegExp(READY_MSG), "stdout", 30_000);
  }

  /** SIGTERM, and resolves when the process has exited. */
  async stop(): Promise<void> {
    await this.child?.stop("SIGTERM");
    this.child = undefined;
  }

  /** Stops the process and deletes its DATA_DIR. */
  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Options for a CLI run: stdin text and extra environment. */
export interface CliOptions {
  input?: string;
  env?: Record<string, string>;
}

/** Where a CLI run points: this harness's server, or `{ url }` of any other. */
export type Target = Pick<ServerProcess, "url">;

/** Starts `switchboard ARGS` against `server` (through SWITCHBOARD_URL) and returns at once. */
export function startCli(server: Target, args: string[], options: CliOptions = {}): Child {
  const child = new Child(
    spawn(process.execPath, [CLI_BIN, ...args], {
      env: { ...process.env, SWITCHBOARD_URL: server.url, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    }),
    `switchboard ${args.join(" ")}`,
  );
  if (options.input !== undefined) child.process.stdin?.end(options.input);
  return child;
}

/** Runs `switchboard ARGS` to its end; stdin is `options.input` or empty. */
export function runCli(server: Target, args: string[], options: CliOptions = {}): Promise<Result> {
  return startCli(server, args, { input: "", ...options }).exited;
}
