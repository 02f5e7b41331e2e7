// Start-up as an operator sees it: --help, invalid configuration, and TLS with ALPN on the port.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestCertificate } from "./certificate.js";
import { SERVER_DIR, ServerProcess } from "./harness.js";

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
    for (const name of [
      "PORT",
      "HOST",
      "DATA_DIR",
      "STORE",
      "LOG_LEVEL",
      "TLS_CERT",
      "TLS_KEY",
      "CHAT_HEARTBEAT_S",
    ]) {
      expect(stdout).toContain(`env: ${name}`);
    }
  });

  it.each([
    [{ PORT: "eighty" }, "PORT"],
    [{ STORE: "mongodb" }, "STORE"],
    [{ LOG_LEVEL: "chatty" }, "LOG_LEVEL"],
  ])("stops on %o with one line naming %s", async (env, name) => {
    const { code, stderr } = await exitOf([], env);
    expect(code).toBe(2);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(name);
  });
});

describe("TLS with ALPN on the one port", () => {
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
      await new Promise((resolve) => stream.on("end", resolve));
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
