import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./harness.js";
import { toolPath } from "./tools.js";

/**
 * A real Redis (Debian's redis-server) on a free loopback port, for the tests (a suite that uses
 * it declares so with `skipWithout("redis-server")`, tools.ts): AOF with
 * `appendfsync always`, so an acknowledged append survives a Redis restart, in a temporary
 * directory. `stop()` and `start()` again keep the data (same port, same directory).
 */
export class RedisServer {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  /** `redis://127.0.0.1:PORT/0` */
  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  static async start(): Promise<RedisServer> {
    const server = new RedisServer(
      await freePort(),
      mkdtempSync(join(tmpdir(), "switchboard-redis-")),
    );
    await server.start();
    return server;
  }

  /** Starts (again) on the same port and directory; resolves once it accepts connections. */
  async start(): Promise<void> {
    const child = spawn(
      toolPath("redis-server"),
      [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--dir",
        this.dir,
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
      ],
      { stdio: "ignore" },
    );
    this.child = child;
    const failed = new Promise<never>((_, reject) => {
      child.once("error", (err) => reject(new Error(`cannot start redis-server: ${err.message}`)));
      child.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)));
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const up = await Promise.race([failed, this.ping()]);
      if (up) return;
      if (Date.now() > deadline) throw new Error("redis-server did not start within 10 s");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops Redis abruptly (SIGKILL: as a crash or a network cut looks to its clients). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  /** Stops Redis and deletes its directory. */
  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private ping(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = connect(this.port, "127.0.0.1");
      socket.once("connect", () => socket.write("PING\r\n"));
      socket.once("data", (data) => {
        socket.destroy();
        resolve(data.toString().startsWith("+PONG"));
      });
      socket.once("error", () => resolve(false));
    });
  }
}
