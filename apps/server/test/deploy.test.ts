// The production build (`pnpm deploy:server <dir>`) and the systemd unit (deploy/switchboard.service),
// tried as an operator's machine would run them: the build in a directory outside the
// workspace, started with plain `node` from another working directory, with the unit's own
// environment and its own readiness command; then the pieces the unit relies on: the ready log
// line, SIGTERM's drain and exit status 0 within the unit's stop timeout, exit status 2 for a
// configuration the server refuses (not restarted), and `systemd-analyze verify`.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, READY_MSG, REPO_DIR, track } from "./harness.js";
import { within } from "./support.js";
import { skipWithout, toolPath } from "./tools.js";

const run = promisify(execFile);
const UNIT = join(REPO_DIR, "deploy", "switchboard.service");

/** The unit's `Key=value` lines, in order (`Environment=` lines repeat). */
function unitLines(key: string): string[] {
  return readFileSync(UNIT, "utf8")
    .split("\n")
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1));
}

/** The unit's Environment= settings. */
function unitEnvironment(): Record<string, string> {
  return Object.fromEntries(
    unitLines("Environment").map((kv) => [
      kv.slice(0, kv.indexOf("=")),
      kv.slice(kv.indexOf("=") + 1),
    ]),
  );
}

interface Started {
  child: ChildProcess;
  stdout: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  signalledAt: { ms: number };
}

/** `node <dir>/server/dist/server.js` from `cwd`, with only `env` (and PATH). */
function startBuilt(dir: string, cwd: string, env: Record<string, string>): Started {
  const child = spawn(process.execPath, [join(dir, "server", "dist", "server.js")], {
    cwd,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  track(child);
  let out = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
  });
  const signalledAt = { ms: 0 };
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>(
    (resolve) =>
      child.on("exit", (code, signal) =>
        resolve({ code, signal, ms: performance.now() - signalledAt.ms }),
      ),
  );
  return { child, stdout: () => out, exited, signalledAt };
}

describe.skipIf(skipWithout("curl"))("the production build and its systemd unit", () => {
  let dir: string;
  let opt: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-deploy-"));
    opt = join(dir, "opt");
    await run(process.execPath, [join(REPO_DIR, "apps", "server", "scripts", "deploy.ts"), opt], {
      cwd: REPO_DIR,
      timeout: 180_000,
    });
  }, 200_000);
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("holds the bundle, the dashboard and production dependencies only", () => {
    expect(existsSync(join(opt, "server", "dist", "server.js"))).toBe(true);
    expect(existsSync(join(opt, "server", "dist", "lua"))).toBe(true);
    expect(existsSync(join(opt, "dashboard", "dist", "index.html"))).toBe(true);
    const installed = readdirSync(join(opt, "server", "node_modules", ".pnpm"));
    expect(installed.some((name) => name.startsWith("better-sqlite3@"))).toBe(true);
    expect(installed.some((name) => name.startsWith("fastify@"))).toBe(true);
    // (@grpc/grpc-js is a production dependency now, of OpenTelemetry's sdk-node, for its
    // OTLP/gRPC exporters; the server loads that SDK only with tracing on.)
    for (const dev of [
      "vitest@",
      "esbuild@",
      "typescript@",
      "tsx@",
      "@biomejs+",
      "playwright-core@",
    ]) {
      expect(installed.filter((name) => name.startsWith(dev))).toEqual([]);
    }
    // Nothing in it points back into the workspace.
    expect(existsSync(join(opt, "server", "src"))).toBe(false);
  });

  it("runs with plain node and the unit's settings: ready line, readiness command, dashboard, a send; SIGTERM drains and exits 0 within TimeoutStopSec", async () => {
    const port = await freePort();
    const env: Record<string, string> = {
      ...unitEnvironment(),
      HOST: "127.0.0.1",
      PORT: String(port),
      DATA_DIR: join(dir, "state", "data"),
    };
    expect(env.STORE).toBe("sqlite");
    const server = startBuilt(opt, dir, env);
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          const check = setInterval(() => {
            if (server.stdout().includes(READY_MSG)) {
              clearInterval(check);
              resolve();
            }
            if (server.child.exitCode !== null) {
              clearInterval(check);
              reject(new Error(`exited: ${server.stdout()}`));
            }
          }, 50);
        }),
        20_000,
        `the ready line "${READY_MSG}"`,
      );
      // The unit's ExecStartPost, pointed at this port: it is what makes the unit "active".
      const [probe] = unitLines("ExecStartPost");
      expect(probe).toBeDefined();
      const script = (probe as string)
        .replace(/^\/bin\/sh -c '(.*)'$/, "$1")
        .replaceAll("8080", String(port));
      await run("/bin/sh", ["-c", script], {
        env: { PATH: `${join(toolPath("curl"), "..")}:/usr/bin:/bin` },
        timeout: 15_000,
      });
      const page = await fetch(`http://127.0.0.1:${port}/`, { headers: { accept: "text/html" } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("<!doctype html>");
      const sent = await fetch(`http://127.0.0.1:${port}/chat.ChatService/SendMessage`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ room: "lobby", user: "ops", content: "deployed" }),
      });
      expect(sent.status).toBe(200);
      expect(await sent.json()).toMatchObject({ offset: "1" });
    } finally {
      server.signalledAt.ms = performance.now();
      server.child.kill("SIGTERM");
    }
    const stopS = Number(unitLines("TimeoutStopSec")[0]);
    const exit = await within(server.exited, stopS * 1000, `exit within TimeoutStopSec=${stopS}`);
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(server.stdout()).toContain('"msg":"shutting down"');
  });

  it("exits 2 with the reason on a configuration the server refuses, which the unit does not restart", async () => {
    expect(unitLines("Restart")).toEqual(["on-failure"]);
    expect(unitLines("RestartPreventExitStatus")).toEqual(["2"]);
    const server = startBuilt(opt, dir, { ...unitEnvironment(), PORT: "eighty" });
    const exit = await within(server.exited, 20_000, "the refusal's exit");
    expect(exit.code).toBe(2);
    expect(server.stdout()).toMatch(/PORT/);
  });

  it.skipIf(skipWithout("systemd-analyze"))("passes systemd-analyze verify", async () => {
    const { stderr } = await run(toolPath("systemd-analyze"), ["verify", UNIT], {
      timeout: 30_000,
    });
    expect(stderr).toBe("");
  });
});
