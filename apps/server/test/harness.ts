import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll } from "vitest";
import { freePort } from "./free-port.js";

/** apps/server, where the server runs. */
export const SERVER_DIR = fileURLToPath(new URL("..", import.meta.url));
/**
 * How a test starts the server: the compiled server (dist/server.js, what `pnpm start` runs),
 * built from the sources before the tests (build-server-once.ts, the e2e projects' global
 * setup), with source maps so stack traces name the sources.
 */
export const SERVER_COMMAND: readonly string[] = [
  "--enable-source-maps",
  // SERVER_BUNDLE of scripts/build-server.ts (not imported: other packages' tests import this
  // file, and that script's own imports need allowImportingTsExtensions).
  fileURLToPath(new URL("../dist/server.js", import.meta.url)),
];
/** The repository root (proto/, node_modules/.bin/buf). */
export const REPO_DIR = fileURLToPath(new URL("../../..", import.meta.url));

/** The line that says the server accepts connections. */
export const READY_MSG = "switchboard listening (gRPC, gRPC-Web and Connect on one port)";

/** How long a server may take to print its ready line, ms. */
const READY_TIMEOUT_MS = 20_000;

/** One parsed pino line of the server's stdout. */
export interface LogRecord {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

// Processes still running when the test process exits (a test timed out, a worker was torn
// down) are killed with it, so that no server outlives its test run.
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});
// A file whose beforeAll failed half-way (one of several servers did not start) never reaches
// the code that closes the others, and vitest may end its worker with a signal, which skips
// `exit`: every process of the file still running after its tests is stopped here (SIGTERM,
// then SIGKILL after 5 s).
afterAll(async () => {
  await Promise.all(
    [...running].map(async (child) => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }),
  );
});

/**
 * Keeps `child` (a server, a CLI run, …) among the processes stopped after the test file and
 * killed when the test process exits, until it exits. Every harness that spawns registers here.
 */
export function track(child: ChildProcess): void {
  running.add(child);
  child.once("exit", () => running.delete(child));
}

// A module of its own, without vitest: globalSetup files (redis-cluster-global.ts) use it too,
// where this file's afterAll cannot run.
export { freePort };

/** Options for {@link startServer}. */
export interface StartOptions {
  /** STORE; default sqlite (in a fresh temporary DATA_DIR). */
  store?: "sqlite" | "memory";
  /** More environment variables (SUBSCRIBER_QUEUE_LIMIT, CHAT_HEARTBEAT_S, …). */
  env?: Record<string, string>;
}

/**
 * A real server process ({@link SERVER_COMMAND}) on a free port of 127.0.0.1, with a
 * temporary DATA_DIR. Its stdout is collected line by line; `restart()` starts a new process on
 * the same port and DATA_DIR (so a SQLite store keeps its messages).
 */
export class ServerProcess {
  /** Every stdout line of every process this object started, in order. */
  readonly lines: string[] = [];
  /** stderr of every process, for failure messages. */
  stderr = "";
  private child: ChildProcess | undefined;
  private exited: Promise<Exit> | undefined;
  private readonly events = new EventEmitter();

  private constructor(
    readonly port: number,
    readonly dataDir: string,
    private readonly env: Record<string, string>,
  ) {}

  /** `http://127.0.0.1:PORT` */
  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The running process's id (undefined when none runs). */
  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  /** Starts a server and resolves when it printed its ready line. */
  static async start(options: StartOptions = {}): Promise<ServerProcess> {
    const dataDir = mkdtempSync(join(tmpdir(), "switchboard-test-"));
    const server = new ServerProcess(await freePort(), dataDir, {
      STORE: options.store ?? "sqlite",
      LOG_LEVEL: "info",
      ...options.env,
    });
    try {
      await server.spawn();
    } catch (err) {
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
    return server;
  }

  /** stdout lines parsed as JSON (non-JSON lines are skipped). */
  records(): LogRecord[] {
    return this.lines.map(parseRecord).filter((r) => r !== undefined);
  }

  /**
   * Resolves with the first stdout record (old or new) matching `predicate`.
   * @throws when the server exits first or after `timeoutMs`, naming `what` was awaited.
   */
  waitForRecord(
    predicate: (r: LogRecord) => boolean,
    timeoutMs = 5_000,
    what = "a matching log line",
  ): Promise<LogRecord> {
    return this.waitForLine(
      0,
      (line) => {
        const r = parseRecord(line);
        return r !== undefined && predicate(r);
      },
      timeoutMs,
      what,
    ).then((line) => parseRecord(line) as LogRecord);
  }

  /** Resolves with the first stdout line at index `from` or later that matches `predicate`. */
  private waitForLine(
    from: number,
    predicate: (line: string) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      let checked = from;
      const check = (): boolean => {
        for (; checked < this.lines.length; checked++) {
          const line = this.lines[checked] as string;
          if (predicate(line)) {
            resolve(line);
            return true;
          }
        }
        return false;
      };
      if (check()) return;
      const onLine = () => {
        if (!check()) return;
        cleanup();
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`the server exited while waiting for ${what}:\n${this.tail()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${what}: not within ${timeoutMs} ms:\n${this.tail()}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.events.off("line", onLine);
        this.events.off("exit", onExit);
      };
      this.events.on("line", onLine);
      this.events.on("exit", onExit);
    });
  }

  /**
   * Sends `signal` to the running process and resolves with how it exited.
   * SIGKILL is `kill -9`: nothing is flushed, nothing is closed.
   */
  async kill(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<Exit> {
    const child = this.child;
    const exited = this.exited;
    if (child === undefined || exited === undefined) throw new Error("no server process");
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`server did not exit within ${timeoutMs} ms of ${signal}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer);
      this.child = undefined;
      this.exited = undefined;
    }
  }

  /** Starts a new process on the same port and DATA_DIR; the old one must have exited. */
  async restart(env: Record<string, string> = {}): Promise<void> {
    if (this.child !== undefined) throw new Error("the server is still running; kill it first");
    Object.assign(this.env, env);
    await this.spawn();
  }

  /** Stops the process (SIGTERM, then SIGKILL) and deletes DATA_DIR. */
  async close(): Promise<void> {
    try {
      if (this.child !== undefined) {
        const child = this.child;
        try {
          await this.kill("SIGTERM", 12_000);
        } catch {
          child.kill("SIGKILL");
        }
      }
    } finally {
      rmSync(this.dataDir, { recursive: true, force: true });
    }
  }

  /** The last stdout and stderr lines, for failure messages. */
  tail(n = 30): string {
    return [...this.lines.slice(-n), this.stderr.slice(-2000)].join("\n");
  }

  private async spawn(): Promise<void> {
    const from = this.lines.length;
    const child = spawn(process.execPath, SERVER_COMMAND, {
      cwd: SERVER_DIR,
      env: {
        ...process.env,
        ...this.env,
        PORT: String(this.port),
        HOST: "127.0.0.1",
        DATA_DIR: this.dataDir,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    track(child);
    this.exited = new Promise<Exit>((resolve) => {
      child.once("exit", (code, signal) => {
        resolve({ code, signal });
        this.events.emit("exit");
      });
    });
    let partial = "";
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) if (line !== "") this.lines.push(line);
      this.events.emit("line");
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    try {
      await this.waitForLine(
        from,
        (line) => line.includes(READY_MSG),
        READY_TIMEOUT_MS,
        "the server's ready line",
      );
    } catch (err) {
      if (child.exitCode === null) child.kill("SIGKILL");
      this.child = undefined;
      this.exited = undefined;
      throw err;
    }
  }
}

/** Starts a server; see {@link ServerProcess}. */
export function startServer(options: StartOptions = {}): Promise<ServerProcess> {
  return ServerProcess.start(options);
}

function parseRecord(line: string): LogRecord | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null ? (value as LogRecord) : undefined;
  } catch {
    return undefined;
  }
}
