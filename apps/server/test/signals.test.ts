// SIGTERM and SIGINT sent to the `pnpm start` process alone, as a container runtime, systemd or a
// supervisor sends them: the signal must reach the server (pnpm runs the script through `sh -c`,
// which would die and leave the server serving as an orphan), the server must shut down
// gracefully, and pnpm must exit with the server's code (README: Shutdown) and leave no process
// behind. WORKERS>1: the cluster primary stops its workers.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort, READY_MSG } from "./harness.js";
import { descendantsOf, PnpmRun, type RunResult, untilGone } from "./process-tree.js";
import { RedisServer } from "./redis-server.js";
import { Code, chatClient, connectErrorOf, uniqueRoom } from "./support.js";
import { skipWithout } from "./tools.js";

/** True when nothing listens on `port` of 127.0.0.1 any more. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

/** The JSON log lines of `stdout` whose msg is `msg`. */
function logLines(stdout: string, msg: string): Array<Record<string, unknown>> {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.msg === msg);
}

/**
 * pnpm exited 0 without its ELIFECYCLE report, every process that ran below it (`below`) is
 * gone, and the server's port is free.
 */
async function expectCleanExit(result: RunResult, below: number[], port: number): Promise<void> {
  expect({ code: result.code, signal: result.signal }, result.stderr).toEqual({
    code: 0,
    signal: null,
  });
  expect(result.stderr).not.toContain("ELIFECYCLE");
  await untilGone(below);
  expect(await portIsFree(port), `port ${port} still in use`).toBe(true);
}

describe("pnpm start: a signal sent to pnpm alone", () => {
  let dir: string;
  const runs: PnpmRun[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-signals-"));
  });
  afterEach(() => {
    for (const run of runs.splice(0)) run.killGroup();
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** `pnpm start` on a free port; resolves once the server is ready, with its port. */
  async function start(env: Record<string, string>, ready = READY_MSG) {
    const port = await freePort();
    const run = new PnpmRun(["start"], {
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      DATA_DIR: join(dir, `data-${port}`),
      ...env,
    });
    runs.push(run);
    // The first start may build the server bundle and the dashboard.
    await run.waitFor(new RegExp(ready.replace(/[()]/g, "\\$&")), "stdout", 90_000);
    return { run, port };
  }

  it.each(["SIGTERM", "SIGINT"] as const)(
    "%s: the server shuts down gracefully, pnpm exits 0 and no process is left",
    async (signal) => {
      const { run, port } = await start({ STORE: "sqlite" });
      const below = descendantsOf(run.pid);
      expect(below.length, "pnpm runs the server as its child").toBeGreaterThan(0);
      expect(await (await fetch(`http://127.0.0.1:${port}/readyz`)).text()).toBe("ok\n");

      // An open subscription: graceful shutdown ends it with the offset to resume from.
      const room = uniqueRoom("signals");
      const client = chatClient(`http://127.0.0.1:${port}`);
      const stream = client.subscribeMessages({ room, user: "watcher" })[Symbol.asyncIterator]();
      expect((await stream.next()).value).toMatchObject({
        content: `Welcome to room ${room}, watcher!`,
      });
      const ended = connectErrorOf(
        (async () => {
          for (;;) if ((await stream.next()).done) return;
        })(),
      );

      const result = await run.signal(signal);
      expect(logLines(result.stdout, "shutting down"), result.stdout).toEqual([
        expect.objectContaining({ signal }),
      ]);
      const err = await ended;
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toMatch(/^server shutting down; resume from offset \d+$/);
      await expectCleanExit(result, below, port);
    },
  );

  describe.skipIf(skipWithout("redis-server"))("with WORKERS=2 on Redis", () => {
    it("WORKERS=2: SIGTERM stops every worker through the primary, exit 0, no process left", async () => {
      const redis = await RedisServer.start();
      try {
        const { run, port } = await start(
          { STORE: redis.url, WORKERS: "2" },
          "all workers listening",
        );
        const below = descendantsOf(run.pid);
        // The primary and its two workers.
        expect(
          below.length,
          "pnpm runs the primary, the primary its workers",
        ).toBeGreaterThanOrEqual(3);

        const result = await run.signal("SIGTERM");
        expect(logLines(result.stdout, "stopping workers"), result.stdout).toHaveLength(1);
        // Each worker shuts down gracefully (told by the primary), then the primary exits.
        expect(logLines(result.stdout, "shutting down"), result.stdout).toHaveLength(2);
        // Seen once under load: no line after the workers' "shutting down"; the exit status and
        // stderr say how the primary ended.
        expect(
          logLines(result.stdout, "all workers stopped"),
          `exit ${result.code} ${result.signal}\n${result.stdout}\nstderr:\n${result.stderr}`,
        ).toHaveLength(1);
        await expectCleanExit(result, below, port);
      } finally {
        await redis.close();
      }
    });
  });

  it("a server that cannot stop in time: pnpm exits 1, as the README says, and nothing is left", async () => {
    // A shutdown that cannot finish within SHUTDOWN_TIMEOUT_MS: a unary call held in flight by
    // a client that never finishes sending its body keeps the HTTP server from closing.
    const { run, port } = await start({ STORE: "memory", SHUTDOWN_TIMEOUT_MS: "300" });
    const below = descendantsOf(run.pid);
    const { connect } = await import("node:net");
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.write(
      "POST /chat.ChatService/SendMessage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    );
    socket.on("error", () => {});
    try {
      const result = await run.signal("SIGTERM");
      expect(logLines(result.stdout, "shutdown timed out"), result.stdout).toHaveLength(1);
      expect(result.code).toBe(1);
      await untilGone(below);
    } finally {
      socket.destroy();
    }
  });
});
