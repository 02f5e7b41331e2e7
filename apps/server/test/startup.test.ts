// Start-up as an operator sees it: `pnpm start` (the compiled server, its build cached, --help
// at once, relative paths where the command runs), invalid configuration and start-up failures
// as one line naming the setting, and TLS with ALPN on the port.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SETTINGS } from "../src/settings.js";
import { createTestCertificate } from "./certificate.js";
import { freePort, READY_MSG, REPO_DIR, SERVER_DIR, ServerProcess } from "./harness.js";
import { RedisServer } from "./redis-server.js";
import { within } from "./support.js";
import { skipWithout } from "./tools.js";

const run = promisify(execFile);

/** Runs the server entry with `args` and `env`, expecting it to exit by itself. */
async function exitOf(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ["--import", "tsx", "src/server.ts", ...args],
      {
        cwd: SERVER_DIR,
        env: { ...process.env, ...env },
        timeout: 20_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("start-up", () => {
  it("--help lists every setting with its variable and exits 0", async () => {
    const { code, stdout } = await exitOf(["--help"]);
    expect(code).toBe(0);
    // commander wraps descriptions at 80 columns, between "env:" and the name too.
    const help = stdout.replace(/\s+/g, " ");
    for (const { env } of Object.values(SETTINGS)) expect(help).toContain(`env: ${env})`);
    expect(help).toContain("--port <n> TCP port for every protocol (default: 8080, env: PORT)");
  });

  it.each([
    [{ PORT: "eighty" }, "PORT"],
    [{ STORE: "mongodb" }, "STORE"],
    [{ LOG_LEVEL: "chatty" }, "LOG_LEVEL"],
    // Above the contract's ceiling (chat.proto's max_bytes): a setting may only tighten a rule.
    [{ MAX_CONTENT_BYTES: "2000000" }, "MAX_CONTENT_BYTES must be at most 1048576"],
  ])("stops on %o with one line naming %s", async (env, name) => {
    const { code, stderr } = await exitOf([], env);
    expect(code).toBe(2);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(name);
  });
});

/** The start-up failure line: one line, no stack, no pnpm error report besides its own. */
function expectOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split("\n");
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^switchboard-server: /);
  expect(lines[0]).toMatch(pattern);
}

/** The start-up warning of a server without authentication. */
const AUTH_OFF = "authentication is off";

describe("start-up failures: one line naming the setting", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-startup-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("DATA_DIR under a regular file (ENOTDIR): exit 1, naming DATA_DIR", async () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "not a directory");
    const { code, stdout, stderr } = await exitOf([], { PORT: "0", DATA_DIR: join(file, "data") });
    expect(code).toBe(1);
    expectOneLine(stderr, /DATA_DIR .*a-file\/data: a part of the path is a file, not a directory/);
    // Nothing else: not "authentication is off" before the failure.
    expect(stdout).not.toContain(AUTH_OFF);
  });

  it("a TLS_CERT that does not exist: exit 1, naming TLS_CERT", async () => {
    const { code, stderr } = await exitOf([], {
      PORT: "0",
      STORE: "memory",
      TLS_CERT: join(dir, "missing-cert.pem"),
      TLS_KEY: join(dir, "missing-key.pem"),
    });
    expect(code).toBe(1);
    expectOneLine(stderr, /cannot read TLS_CERT .*missing-cert\.pem: no such file or directory/);
  });

  it(`a busy port, or a bad setting: exit without saying "${AUTH_OFF}" first`, async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const busy = await exitOf([], { PORT: String(port), STORE: "memory", LOG_LEVEL: "info" });
      expect(busy.code).toBe(1);
      expectOneLine(busy.stderr, new RegExp(`port ${port} is in use \\(PORT\\)`));
      expect(busy.stdout).not.toContain(AUTH_OFF);
    } finally {
      blocker.close();
    }
    const bad = await exitOf([], { PORT: "eighty" });
    expect(bad.code).toBe(2);
    expect(bad.stdout + bad.stderr).not.toContain(AUTH_OFF);
  });

  it(`a server that starts says "${AUTH_OFF}" once it listens, at warn`, async () => {
    const server = await ServerProcess.start({ store: "memory" });
    try {
      const records = await server.waitForRecord((r) => String(r.msg).startsWith(AUTH_OFF));
      const msgs = server.records().map((r) => r.msg);
      expect(records.level).toBe(40);
      expect(msgs.indexOf(records.msg)).toBeGreaterThan(msgs.indexOf(READY_MSG));
      expect(msgs.filter((m) => String(m).startsWith(AUTH_OFF))).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  it("Redis unreachable: exit 1 within seconds, naming STORE, without the password", async () => {
    const port = await freePort();
    const started = Date.now();
    const { code, stdout, stderr } = await exitOf([], {
      PORT: "0",
      STORE: `redis://:hunter2@127.0.0.1:${port}/0`,
    });
    expect(code).toBe(1);
    expect(stdout).not.toContain(AUTH_OFF);
    expect(Date.now() - started).toBeLessThan(15_000);
    expectOneLine(
      stderr,
      new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port}/0 \\(STORE\\)`),
    );
    expect(stderr).not.toContain("hunter2");
  });
});

/** Runs `pnpm start` (the repository's start script) from `cwd`, as a user does. */
function pnpmStart(cwd: string, args: string[], env: Record<string, string>): ChildProcess {
  return spawn("pnpm", ["--dir", REPO_DIR, "start", ...args], {
    cwd,
    // Its own process group, so that Ctrl-C can be sent to pnpm and the server alike.
    detached: true,
    env: { ...process.env, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Collects a process's output until it exits. */
async function outputOf(child: ChildProcess, timeoutMs: number) {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** What a process has written to stdout so far, read as it grows. */
function stdoutOf(child: ChildProcess): () => string {
  let stdout = "";
  child.stdout?.on("data", (c: Buffer) => {
    stdout += c.toString();
  });
  return () => stdout;
}

/** Resolves to the server's ready line (JSON) once it logs it; fails after 60 s or at its exit. */
async function untilReady(
  child: ChildProcess,
  stdout: () => string,
  output: Promise<{ stderr: string }>,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 60_000;
  while (!stdout().includes(READY_MSG)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      throw new Error(`not ready: ${stdout()}\n${(await output).stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const line = stdout()
    .split("\n")
    .find((l) => l.includes(READY_MSG)) as string;
  return JSON.parse(line) as Record<string, unknown>;
}

describe("pnpm start", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-pnpm-start-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("-- --help answers in well under 5 s, without building the dashboard or loading tsx", async () => {
    // Once so that the server bundle is up to date (a build takes a fraction of a second).
    await outputOf(pnpmStart(dir, ["--", "--help"], {}), 60_000);
    const started = Date.now();
    const { code, stdout, stderr } = await outputOf(pnpmStart(dir, ["--", "--help"], {}), 30_000);
    const elapsedMs = Date.now() - started;
    console.info(`pnpm start -- --help: ${elapsedMs} ms`);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: switchboard-server");
    expect(stdout).toContain("env: PRESENCE_GRACE_MS");
    expect(stdout).not.toMatch(/build:if-stale|dashboard: |tsx/);
    expect(stderr).not.toContain("dashboard");
    expect(elapsedMs).toBeLessThan(5_000);
  });

  it("a busy port: one line naming PORT on stderr, exit 1, no stack and no pnpm run report", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const { code, stdout, stderr } = await outputOf(
        pnpmStart(dir, [], { PORT: String(port), STORE: "memory" }),
        60_000,
      );
      expect(code).toBe(1);
      // The build line, when the bundle was stale, comes first; then the one line.
      const lines = stderr.split("\n").filter((l) => l !== "" && !/^switchboard: built /.test(l));
      expect(lines).toEqual([
        `switchboard-server: port ${port} is in use (PORT); stop the other process or choose another port`,
      ]);
      expect(stdout).not.toMatch(/ERR_PNPM|EADDRINUSE|at Server\.|node:net/);
    } finally {
      blocker.close();
    }
  });

  it("runs the compiled server, with a relative DATA_DIR where the command ran, and answers", async () => {
    const port = await freePort();
    const child = pnpmStart(dir, [], { PORT: String(port), DATA_DIR: "relative-data" });
    let portFreed = false;
    const output = outputOf(child, 90_000);
    const stdout = stdoutOf(child);
    try {
      const ready = await untilReady(child, stdout, output);
      const database = join(dir, "relative-data", "switchboard.db");
      expect(ready).toMatchObject({ store: "sqlite", location: database });
      expect(existsSync(database)).toBe(true);
      const answer = await fetch(`http://127.0.0.1:${port}/chat.ChatService/SendMessage`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ room: "start", user: "u", content: "compiled" }),
      });
      expect(await answer.json()).toMatchObject({ offset: "1" });
      // What ran is the bundle, up to date with the sources, and cached: no build now.
      const bundle = join(SERVER_DIR, "dist", "server.js");
      expect(statSync(bundle).mtimeMs).toBeGreaterThanOrEqual(
        statSync(join(SERVER_DIR, "src", "server.ts")).mtimeMs,
      );
      const { stdout: check } = await run(
        process.execPath,
        [join(SERVER_DIR, "scripts", "build-server.ts"), "--if-stale"],
        { cwd: SERVER_DIR },
      );
      expect(check).toBe("server: dist/ is up to date\n");
    } finally {
      // Ctrl-C: the terminal signals the whole process group.
      process.kill(-(child.pid as number), "SIGINT");
      const { code } = await output;
      expect(stdout()).toContain('"msg":"shutting down"');
      console.info(`pnpm start after Ctrl-C: exit code ${code}`);
      // The server itself is gone too: its port is free again.
      const deadline = Date.now() + 15_000;
      while (!portFreed && Date.now() < deadline) {
        portFreed = await new Promise<boolean>((resolve) => {
          const probe = createServer();
          probe.once("error", () => resolve(false));
          probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
        });
        if (!portFreed) await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(portFreed, `port ${port} still in use after Ctrl-C`).toBe(true);
  });

  it.skipIf(skipWithout("redis-server"))(
    "runs the compiled server on Redis: the Lua scripts are found beside the bundle",
    async () => {
      const redis = await RedisServer.start();
      const port = await freePort();
      const child = pnpmStart(dir, [], { PORT: String(port), STORE: redis.url });
      const output = outputOf(child, 90_000);
      try {
        await untilReady(child, stdoutOf(child), output);
        expect(existsSync(join(SERVER_DIR, "dist", "lua", "append.lua"))).toBe(true);
        // An append runs lua/append.lua; a subscription's presence, lua/presence-join.lua.
        const send = async (content: string) => {
          const answer = await fetch(`http://127.0.0.1:${port}/chat.ChatService/SendMessage`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ room: "lua", user: "u", content }),
          });
          return (await answer.json()) as Record<string, unknown>;
        };
        expect(await send("first")).toMatchObject({ offset: "1" });
        expect(await send("second")).toMatchObject({ offset: "2" });
      } finally {
        process.kill(-(child.pid as number), "SIGINT");
        await output;
        await redis.close();
      }
    },
  );
});

describe.skipIf(skipWithout("openssl"))("TLS with ALPN on the one port", () => {
  let dir: string;
  let server: ServerProcess;
  let ca: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-tls-"));
    const certificate = createTestCertificate(dir);
    ca = certificate.ca;
    server = await ServerProcess.start({
      store: "memory",
      env: { TLS_CERT: certificate.certFile, TLS_KEY: certificate.keyFile },
    });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const body = JSON.stringify({ room: "tls", user: "alice", content: "over TLS" });

  it("negotiates h2 and answers a Connect call", async () => {
    const session = http2.connect(`https://127.0.0.1:${server.port}`, { ca });
    try {
      const alpn = await new Promise<string | false | undefined>((resolve, reject) => {
        session.once("connect", () => resolve(session.alpnProtocol));
        session.once("error", reject);
      });
      expect(alpn).toBe("h2");
      const stream = session.request({
        ":method": "POST",
        ":path": "/chat.ChatService/SendMessage",
        "content-type": "application/json",
      });
      stream.end(body);
      let text = "";
      stream.setEncoding("utf8");
      stream.on("data", (c: string) => {
        text += c;
      });
      await within(
        new Promise((resolve) => stream.on("end", resolve)),
        5_000,
        "the end of the answer over h2",
      );
      expect(JSON.parse(text)).toMatchObject({ offset: "1" });
    } finally {
      session.close();
    }
  });

  it("negotiates http/1.1 for an HTTP/1.1-only client", async () => {
    const { status, text, alpn } = await new Promise<{
      status: number;
      text: string;
      alpn: string | false | null;
    }>((resolve, reject) => {
      // ALPNProtocols is a tls.connect option that https.request passes through.
      const options: https.RequestOptions & { ALPNProtocols: string[] } = {
        host: "127.0.0.1",
        port: server.port,
        path: "/chat.ChatService/SendMessage",
        method: "POST",
        ca,
        ALPNProtocols: ["http/1.1"],
        headers: { "content-type": "application/json" },
      };
      const req = https.request(options, (res) => {
        // The socket is detached from the response once it ends: read ALPN now.
        const negotiated = (res.socket as TLSSocket).alpnProtocol;
        let t = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          t += c;
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            text: t,
            alpn: negotiated,
          }),
        );
      });
      req.on("error", reject);
      req.end(body);
    });
    expect(alpn).toBe("http/1.1");
    expect(status).toBe(200);
    expect(JSON.parse(text)).toMatchObject({ offset: "2" });
  });
});
