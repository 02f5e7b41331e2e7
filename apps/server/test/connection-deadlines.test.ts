// Connection deadlines on the one port, against a real server with small settings: connections
// that send nothing, or too little, or their headers too slowly, are closed at their deadline
// (README "Security"), /metrics counts each close by reason, and a legitimate client is served
// within 1 s throughout.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestCertificate, type TestCertificate } from "./certificate.js";
import { type ServerProcess, startServer } from "./harness.js";
import { closedFor, LegitProbe, sample, scrape } from "./legit-probe.js";
import { skipWithout } from "./tools.js";

const FIRST_BYTE_MS = 1_000;
const HEADERS_MS = 1_500;
const IDLE_MS = 1_000;
const ENV = {
  FIRST_BYTE_TIMEOUT_MS: String(FIRST_BYTE_MS),
  HTTP1_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
  HTTP1_IDLE_TIMEOUT_MS: String(IDLE_MS),
};
/** How late after its deadline a close may come on a loaded machine, ms. */
const SLACK_MS = 1_500;

/** A connection (plaintext, or TLS when `ca` is given) as a raw socket, and when it closed. */
function open(
  port: number,
  ca?: Buffer,
): { socket: net.Socket; closed: Promise<number>; received: () => string } {
  const started = performance.now();
  const socket =
    ca === undefined
      ? net.connect(port, "127.0.0.1")
      : tls.connect({
          port,
          host: "127.0.0.1",
          ca,
          servername: "localhost",
          ALPNProtocols: ["http/1.1"],
        });
  let text = "";
  socket.setEncoding("latin1");
  socket.on("data", (chunk: string) => {
    text += chunk;
  });
  socket.on("error", () => {});
  const closed = new Promise<number>((resolve) =>
    socket.once("close", () => resolve(performance.now() - started)),
  );
  return { socket, closed, received: () => text };
}

/** Writes a request line, then one header byte every 300 ms until the socket closes. */
function slowHeaders(socket: net.Socket): void {
  const write = () => socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
  if (socket instanceof tls.TLSSocket) socket.once("secureConnect", write);
  else write();
  const drip = setInterval(() => {
    if (socket.destroyed) clearInterval(drip);
    else socket.write("a");
  }, 300);
  socket.once("close", () => clearInterval(drip));
}

/** The status line and Connect error body of a raw HTTP/1.1 answer. */
function parseAnswer(text: string): { status: number; body: unknown } {
  const [head = "", body = ""] = text.split("\r\n\r\n");
  return { status: Number(head.split(" ")[1]), body: body === "" ? undefined : JSON.parse(body) };
}

describe("connection deadlines (plaintext: HTTP/1.1 and h2c)", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ store: "memory", env: ENV });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("closes 50 connections that send nothing at the first-byte deadline", async () => {
    const before = await closedFor(server.port, "first_byte_timeout");
    const probe = new LegitProbe(server.port);
    const silent = Array.from({ length: 50 }, () => open(server.port));
    // While they are open, /metrics counts them.
    await new Promise((r) => setTimeout(r, 300));
    expect(
      sample(await scrape(server.port), "switchboard_connections_open"),
    ).toBeGreaterThanOrEqual(50);
    const lifetimes = await Promise.all(silent.map((c) => c.closed));
    const result = await probe.stop();
    console.log(
      `50 silent connections lived ${Math.round(Math.min(...lifetimes))}–${Math.round(Math.max(...lifetimes))} ms (FIRST_BYTE_TIMEOUT_MS=${FIRST_BYTE_MS}); legit calls: ${result.served}, slowest ${Math.round(result.maxMs)} ms`,
    );
    for (const ms of lifetimes) {
      expect(ms).toBeGreaterThanOrEqual(FIRST_BYTE_MS - 50);
      expect(ms).toBeLessThan(FIRST_BYTE_MS + SLACK_MS);
    }
    expect(await closedFor(server.port, "first_byte_timeout")).toBeGreaterThanOrEqual(before + 50);
    expect(result.failures).toEqual([]);
    expect(result.served).toBeGreaterThan(3);
    expect(result.maxMs).toBeLessThan(1_000);
  });

  it("closes a connection stuck in the middle of the HTTP/2 preface at the first-byte deadline", async () => {
    const before = await closedFor(server.port, "first_byte_timeout");
    const c = open(server.port);
    c.socket.write("PRI * HTTP/2.0\r\n");
    const ms = await c.closed;
    expect(ms).toBeGreaterThanOrEqual(FIRST_BYTE_MS - 50);
    expect(ms).toBeLessThan(FIRST_BYTE_MS + SLACK_MS);
    expect(await closedFor(server.port, "first_byte_timeout")).toBe(before + 1);
  });

  it("answers slow headers with 408 and the Connect error body, then closes, at the header deadline", async () => {
    const before = await closedFor(server.port, "header_timeout");
    const probe = new LegitProbe(server.port);
    const c = open(server.port);
    slowHeaders(c.socket);
    const ms = await c.closed;
    const result = await probe.stop();
    console.log(
      `slow headers (a byte every 300 ms) lived ${Math.round(ms)} ms (HTTP1_HEADERS_TIMEOUT_MS=${HEADERS_MS})`,
    );
    expect(ms).toBeGreaterThanOrEqual(HEADERS_MS - 50);
    expect(ms).toBeLessThan(HEADERS_MS + SLACK_MS);
    expect(parseAnswer(c.received())).toEqual({
      status: 408,
      body: {
        code: "deadline_exceeded",
        message: `request headers not received within ${HEADERS_MS} ms`,
      },
    });
    expect(await closedFor(server.port, "header_timeout")).toBe(before + 1);
    expect(result.failures).toEqual([]);
    expect(result.maxMs).toBeLessThan(1_000);
  });

  it("times out the headers of a second request on a kept-alive connection too", async () => {
    const c = open(server.port);
    c.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await new Promise((r) => setTimeout(r, 200));
    expect(c.received()).toMatch(/^HTTP\/1.1 200/);
    slowHeaders(c.socket);
    const ms = await c.closed;
    expect(ms).toBeLessThan(200 + HEADERS_MS + SLACK_MS);
    expect(c.received()).toContain("HTTP/1.1 408 Request Timeout");
  });

  it("closes a kept-alive HTTP/1.1 connection with no request at the idle timeout", async () => {
    const before = await closedFor(server.port, "idle");
    const c = open(server.port);
    c.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const ms = await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1.1 200/);
    // node:http adds a second to the keep-alive timeout (keepAliveTimeoutBuffer).
    expect(ms).toBeGreaterThanOrEqual(IDLE_MS - 50);
    expect(ms).toBeLessThan(IDLE_MS + 1_000 + SLACK_MS);
    expect(await closedFor(server.port, "idle")).toBe(before + 1);
  });
});

describe.skipIf(skipWithout("openssl"))("connection deadlines (TLS)", () => {
  let server: ServerProcess;
  let dir: string;
  let cert: TestCertificate;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-deadlines-"));
    cert = createTestCertificate(dir);
    server = await startServer({
      store: "memory",
      env: { ...ENV, TLS_CERT: cert.certFile, TLS_KEY: cert.keyFile },
    });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("closes silent connections and stalled handshakes at the first-byte deadline", async () => {
    const probe = new LegitProbe(server.port, { ca: cert.ca });
    const silent = Array.from({ length: 10 }, () => open(server.port));
    // A handshake that starts and stalls: the first bytes of a TLS record, nothing more.
    const stalled = open(server.port);
    stalled.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    const lifetimes = await Promise.all([...silent, stalled].map((c) => c.closed));
    const result = await probe.stop();
    for (const ms of lifetimes) {
      expect(ms).toBeGreaterThanOrEqual(FIRST_BYTE_MS - 50);
      expect(ms).toBeLessThan(FIRST_BYTE_MS + SLACK_MS);
    }
    expect(await closedFor(server.port, "first_byte_timeout", cert.ca)).toBeGreaterThanOrEqual(10);
    expect(await closedFor(server.port, "tls_handshake_timeout", cert.ca)).toBe(1);
    expect(result.failures).toEqual([]);
    expect(result.maxMs).toBeLessThan(1_000);
  });

  it("answers slow headers over TLS with 408, then closes, at the header deadline", async () => {
    const c = open(server.port, cert.ca);
    slowHeaders(c.socket);
    const ms = await c.closed;
    expect(ms).toBeLessThan(HEADERS_MS + SLACK_MS);
    expect(parseAnswer(c.received()).status).toBe(408);
    expect(await closedFor(server.port, "header_timeout", cert.ca)).toBe(1);
  });
});
