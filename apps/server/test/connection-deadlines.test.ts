// Connection deadlines on the one port, against a real server with small settings: connections
// that send nothing, or too little, or their headers too slowly, are closed at their deadline
// (README "Security"), /metrics counts each close by reason, and a legitimate client is served
// within 1 s throughout. The deadlines measure the peer, not the server: bytes that arrived while
// the server's event loop was blocked past a deadline (loop-blocker.mjs) are served, and silent
// or slow peers are still closed.
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockLoop, loopBlockerEnv } from "./blocked-loop.js";
import { createTestCertificate, type TestCertificate } from "./certificate.js";
import { type ServerProcess, startServer } from "./harness.js";
import { closedFor, LegitProbe, sample, scrape } from "./legit-probe.js";
import { within } from "./support.js";
import { skipWithout } from "./tools.js";

const FIRST_BYTE_MS = 1_000;
const HEADERS_MS = 1_500;
const IDLE_MS = 1_000;
/** How long SIGUSR2 blocks the server's event loop: past every deadline above, ms. */
const BLOCK_MS = 2_000;
const ENV = {
  FIRST_BYTE_TIMEOUT_MS: String(FIRST_BYTE_MS),
  HTTP1_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
  HTTP1_IDLE_TIMEOUT_MS: String(IDLE_MS),
  ...loopBlockerEnv(BLOCK_MS),
};
/** How late after its deadline a close may come on a loaded machine, ms. */
const SLACK_MS = 1_500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** An HTTP/1.1 GET /healthz that asks the server to close the connection after its answer. */
const HEALTHZ_CLOSE = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
/**
 * `switchboard_connections_closed_total{reason}` once it reaches `count` (the server counts a
 * close a turn after the socket closes; the peer may see it first), or its last value after 2 s.
 */
async function closedReaching(port: number, reason: string, count: number): Promise<number> {
  const deadline = performance.now() + 2_000;
  let n = await closedFor(port, reason);
  while (n < count && performance.now() < deadline) {
    await sleep(50);
    n = await closedFor(port, reason);
  }
  return n;
}
/** How many answers `text` holds, and how many of them are 200 with the body "ok". */
function answers(text: string): { total: number; ok: number } {
  return {
    total: text.split("HTTP/1.1 ").length - 1,
    ok: text.split(/HTTP\/1\.1 200 OK\r\n[\s\S]*?\r\n\r\nok\n/).length - 1,
  };
}

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
        message: `request headers not received within ${HEADERS_MS} ms (HTTP1_HEADERS_TIMEOUT_MS)`,
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

  it("serves HTTP/1.1 and h2c whose first bytes arrived while the event loop was blocked past the first-byte deadline, and still closes a silent connection beside them", async () => {
    const before = await closedFor(server.port, "first_byte_timeout");
    const h1 = open(server.port);
    const h2Socket = open(server.port);
    const silent = open(server.port);
    await Promise.all([once(h1.socket, "connect"), once(h2Socket.socket, "connect")]);
    // Accepted, their deadlines running; then the server's loop stops for longer than them.
    await sleep(100);
    await blockLoop(server);
    h1.socket.write(HEALTHZ_CLOSE);
    const session = http2.connect(server.baseUrl, { createConnection: () => h2Socket.socket });
    session.on("error", () => {});
    const status = new Promise<string>((resolve) => {
      const req = session.request({ ":path": "/healthz" });
      req.on("response", (headers) => resolve(String(headers[":status"])));
      req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
      req.resume();
      req.end();
    });
    await within(h1.closed, BLOCK_MS + 5_000, "the HTTP/1.1 answer and close");
    expect(answers(h1.received())).toEqual({ total: 1, ok: 1 });
    expect(await within(status, 5_000, "the h2c answer")).toBe("200");
    session.destroy();
    // The silent one sent nothing: closed as before, at most one more period later (the server
    // was behind when its deadline ran).
    const ms = await within(silent.closed, BLOCK_MS + 2 * FIRST_BYTE_MS + SLACK_MS, "silent close");
    expect(ms).toBeGreaterThanOrEqual(BLOCK_MS);
    expect(silent.received()).toBe("");
    expect(await closedReaching(server.port, "first_byte_timeout", before + 1)).toBe(before + 1);
  });

  it("serves a request whose header block was completed while the event loop was blocked past the header deadline", async () => {
    const before = await closedFor(server.port, "header_timeout");
    const c = open(server.port);
    c.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    await sleep(300);
    await blockLoop(server);
    c.socket.write("Connection: close\r\n\r\n");
    await within(c.closed, BLOCK_MS + 5_000, "the answer and close");
    expect(answers(c.received())).toEqual({ total: 1, ok: 1 });
    expect(await closedFor(server.port, "header_timeout")).toBe(before);
  });

  it("still answers slow headers with 408 when the event loop was blocked while they dripped", async () => {
    const before = await closedFor(server.port, "header_timeout");
    const c = open(server.port);
    slowHeaders(c.socket);
    await sleep(300);
    await blockLoop(server);
    const ms = await c.closed;
    expect(ms).toBeGreaterThanOrEqual(HEADERS_MS);
    // One more period at most: the dripped bytes were waiting when the deadline ran.
    expect(ms).toBeLessThan(300 + BLOCK_MS + HEADERS_MS + SLACK_MS);
    expect(parseAnswer(c.received())).toEqual({
      status: 408,
      body: {
        code: "deadline_exceeded",
        message: `request headers not received within ${HEADERS_MS} ms (HTTP1_HEADERS_TIMEOUT_MS)`,
      },
    });
    expect(await closedReaching(server.port, "header_timeout", before + 1)).toBe(before + 1);
  });

  it("serves the next request of a kept-alive connection that arrived while the event loop was blocked past the idle timeout", async () => {
    const before = await closedFor(server.port, "idle");
    const c = open(server.port);
    c.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const deadline = performance.now() + 5_000;
    while (answers(c.received()).ok < 1 && performance.now() < deadline) await sleep(10);
    expect(answers(c.received())).toEqual({ total: 1, ok: 1 });
    // node:http closes it IDLE_MS + 1 s after the answer; the block spans that moment.
    await sleep(IDLE_MS + 1_000 - 600);
    await blockLoop(server);
    c.socket.write(HEALTHZ_CLOSE);
    await within(c.closed, BLOCK_MS + 5_000, "the second answer and close");
    expect(answers(c.received())).toEqual({ total: 2, ok: 2 });
    expect(await closedFor(server.port, "idle")).toBe(before);
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

  it("finishes a TLS handshake whose ClientHello arrived while the event loop was blocked past the first-byte deadline", async () => {
    const before = await closedFor(server.port, "tls_handshake_timeout", cert.ca);
    const raw = net.connect(server.port, "127.0.0.1");
    raw.on("error", () => {});
    await once(raw, "connect");
    await sleep(100);
    await blockLoop(server);
    const c = tls.connect({
      socket: raw,
      ca: cert.ca,
      servername: "localhost",
      ALPNProtocols: ["http/1.1"],
    });
    let text = "";
    c.setEncoding("latin1");
    c.on("data", (chunk: string) => {
      text += chunk;
    });
    c.on("error", () => {});
    c.once("secureConnect", () => c.write(HEALTHZ_CLOSE));
    await within(once(c, "close"), BLOCK_MS + 2 * FIRST_BYTE_MS + 5_000, "the answer over TLS");
    expect(answers(text)).toEqual({ total: 1, ok: 1 });
    expect(await closedFor(server.port, "tls_handshake_timeout", cert.ca)).toBe(before);
    expect(await closedFor(server.port, "first_byte_timeout", cert.ca)).toBeGreaterThanOrEqual(10);
  });
});
