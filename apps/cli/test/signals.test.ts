// SIGTERM and SIGINT sent to a backgrounded `pnpm --silent cli …` process alone, as `kill PID`, a
// supervisor or a container runtime sends them: the signal must reach the CLI (pnpm runs the
// script through `sh -c`, which would die and leave the CLI following, or reconnecting, as an
// orphan), a command that follows a stream stops cleanly with exit 0, a call cut short exits
// 128 + the signal's number (README: The command-line client), and no process is left.
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort, ServerProcess } from "../../server/test/harness.js";
import { descendantsOf, PnpmRun, untilGone } from "../../server/test/process-tree.js";

describe("pnpm --silent cli: a signal sent to pnpm alone", () => {
  let server: ServerProcess;
  const runs: PnpmRun[] = [];
  beforeAll(async () => {
    server = await ServerProcess.start({ store: "memory" });
  });
  afterEach(() => {
    for (const run of runs.splice(0)) run.killGroup();
  });
  afterAll(async () => {
    await server?.close();
  });

  /** `pnpm --silent cli ARGS` against `url` (default: the test's server). */
  function cli(args: string[], url = server.baseUrl, stdin: "ignore" | "pipe" = "ignore") {
    const run = new PnpmRun(["--silent", "cli", ...args], { SWITCHBOARD_URL: url }, stdin);
    runs.push(run);
    return run;
  }

  /** Signals pnpm, and checks how it ended and that nothing below it still runs. */
  async function stop(run: PnpmRun, signal: NodeJS.Signals) {
    const below = descendantsOf(run.pid);
    expect(below.length, "pnpm runs the CLI as its child").toBeGreaterThan(0);
    const result = await run.signal(signal);
    await untilGone(below);
    expect(result.stderr).not.toContain("ELIFECYCLE");
    return result;
  }

  it.each(["SIGTERM", "SIGINT"] as const)(
    "subscribe: %s ends the subscription with exit 0",
    async (signal) => {
      const run = cli(["subscribe", "signals", "--user", "bob"]);
      await run.waitFor(/^live$/m, "stderr");
      await run.waitFor(/Welcome to room signals, bob!/, "stdout");
      const result = await stop(run, signal);
      expect({ code: result.code, signal: result.signal }, result.stderr).toEqual({
        code: 0,
        signal: null,
      });
    },
  );

  it("rooms --watch: SIGTERM ends the watch with exit 0", async () => {
    const run = cli(["rooms", "--watch"]);
    await run.waitFor(/^live$/m, "stderr");
    const result = await stop(run, "SIGTERM");
    expect(result.code, result.stderr).toBe(0);
  });

  it("rooms --watch while it reconnects to a server that is down: SIGTERM ends it with exit 0", async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const run = cli(["rooms", "--watch"], down);
    await run.waitFor(/reconnecting… \(attempt 1, next try in [\d.]+ s\): /, "stderr");
    const result = await stop(run, "SIGTERM");
    expect(result.code, result.stderr).toBe(0);
  });

  it("chat with stdin still open: SIGTERM ends the session with exit 0", async () => {
    const run = cli(["chat", "signals-chat", "--user", "carol"], server.baseUrl, "pipe");
    await run.waitFor(/^connected as carol to room signals-chat/m, "stderr");
    const result = await stop(run, "SIGTERM");
    expect(result.code, result.stderr).toBe(0);
  });

  it("logs: SIGTERM ends the tail with exit 0", async () => {
    const run = cli(["logs", "--backlog", "1"]);
    await run.waitFor(/\S/, "stdout");
    const result = await stop(run, "SIGTERM");
    expect(result.code, result.stderr).toBe(0);
  });

  it("metrics: SIGTERM ends the stream with exit 0", async () => {
    const run = cli(["metrics", "--interval", "1"]);
    await run.waitFor(/cpu_usage/, "stdout");
    const result = await stop(run, "SIGTERM");
    expect(result.code, result.stderr).toBe(0);
  });

  describe("a call that has not finished", () => {
    // A server that accepts connections and never answers: the call stays in flight.
    let silent: Server;
    const sockets = new Set<Socket>();
    let url: string;
    beforeAll(async () => {
      silent = createServer((socket) => {
        sockets.add(socket);
        socket.on("error", () => {});
      });
      await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
      url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    });
    afterAll(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    });

    it.each([
      ["SIGTERM", 143],
      ["SIGINT", 130],
    ] as const)("send: %s exits %i (128 + the signal's number)", async (signal, status) => {
      const connections = sockets.size;
      const run = cli(["send", "general", "hello", "--user", "alice"], url);
      // The request has reached the server that will not answer.
      const deadline = Date.now() + 30_000;
      while (sockets.size === connections) {
        if (Date.now() > deadline) throw new Error(`send did not connect to ${url} in 30 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const result = await stop(run, signal);
      expect(result.code, result.stderr).toBe(status);
    });
  });
});
