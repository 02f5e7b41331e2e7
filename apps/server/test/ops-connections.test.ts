// HTTP/2 connection hygiene: keepalive PINGs drop a peer that stopped answering, an idle
// connection is closed with GOAWAY, oversized headers are refused, and a PING flood does not
// keep the server from serving others. Both deadlines measure the peer, not the server: a PING
// answer or a new stream that arrived while the server's event loop was blocked is read first.
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockLoop, loopBlockerEnv } from "./blocked-loop.js";
import { ServerProcess } from "./harness.js";
import { closedFor } from "./legit-probe.js";
import { connectH2, grpcRequest } from "./raw-grpc.js";
import { chatClient, within } from "./support.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** One HTTP/2 frame: 9-byte header, then the payload. */
function frame(type: number, flags: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(0, 5);
  return Buffer.concat([header, payload]);
}
const SETTINGS = frame(0x4, 0);
const PING = frame(0x6, 0, Buffer.alloc(8));

/** A raw h2c connection that sent the preface and its SETTINGS and then answers nothing. */
async function silentPeer(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
  const socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.write(Buffer.concat([PREFACE, SETTINGS]));
  return { socket, closed };
}

describe("HTTP/2 connections", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start({
      store: "memory",
      env: {
        HTTP2_KEEPALIVE_MS: "200",
        HTTP2_KEEPALIVE_TIMEOUT_MS: "300",
        IDLE_TIMEOUT_MS: "2500",
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("drops a peer that does not answer keepalive PINGs", async () => {
    const peer = await silentPeer(server.port);
    // The peer reads (so it sees the connection close) but never ACKs the server's PINGs.
    peer.socket.resume();
    await within(peer.closed, 2_000, "the server closing a connection that ignores PINGs");
  });

  it("keeps a connection that answers PINGs, and closes it with GOAWAY once idle", async () => {
    const session = http2.connect(server.baseUrl);
    session.on("error", () => {});
    const goaway = new Promise<number>((resolve) => {
      const opened = performance.now();
      session.once("goaway", () => resolve(performance.now() - opened));
    });
    await within(
      new Promise<void>((resolve, reject) => {
        const req = session.request({ ":path": "/healthz" });
        req.on("response", () => resolve());
        req.on("error", reject);
        req.resume();
        req.end();
      }),
      5_000,
      "the answer to /healthz over HTTP/2",
    );
    // Several keepalive rounds pass without the connection being dropped.
    const afterMs = await within(goaway, 6_000, "GOAWAY on an idle connection");
    expect(afterMs).toBeGreaterThan(2_000);
    session.destroy();
  });

  it("refuses oversized request headers: 431 over HTTP/1.1, a reset over HTTP/2", async () => {
    const big = "a".repeat(20_000);
    const h1 = await fetch(`${server.baseUrl}/healthz`, { headers: { "x-big": big } });
    expect(h1.status).toBe(431);
    const session = http2.connect(server.baseUrl);
    session.on("error", () => {});
    const outcome = await within(
      new Promise<string>((resolve) => {
        const req = session.request({ ":path": "/healthz", "x-big": "a".repeat(100_000) });
        req.on("response", (headers) => resolve(String(headers[":status"])));
        req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
        req.on("close", () => resolve("closed"));
        req.end();
      }),
      5_000,
      "an answer or a reset for 100 kB of headers over HTTP/2",
    );
    expect(outcome).not.toBe("200");
    session.destroy();
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
  });

  it("serves others during a PING flood", async () => {
    const peer = await silentPeer(server.port);
    // The flooder does not read its PING ACKs either: they pile up on the server's side until
    // nghttp2's outbound flood limit ends the connection.
    peer.socket.pause();
    const flood = Buffer.concat(Array.from({ length: 20_000 }, () => PING));
    for (let i = 0; i < 5; i++) peer.socket.write(flood);
    const client = chatClient(server.baseUrl, {
      protocol: "grpc",
      httpVersion: "2",
      useBinaryFormat: true,
    });
    await expect(
      within(client.listRooms({}), 5_000, "ListRooms after the flood"),
    ).resolves.toBeDefined();
  });
});

describe("HTTP/2 keepalive and idle deadlines while the server's event loop is blocked", () => {
  /** Longer than both deadlines below, ms. */
  const BLOCK_MS = 1_500;
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start({
      store: "memory",
      env: {
        HTTP2_KEEPALIVE_MS: "300",
        HTTP2_KEEPALIVE_TIMEOUT_MS: "400",
        IDLE_TIMEOUT_MS: "1000",
        ...loopBlockerEnv(BLOCK_MS),
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  /** GET /healthz on `session`: its :status, or how it failed. */
  function healthz(session: http2.ClientHttp2Session): Promise<string> {
    return new Promise<string>((resolve) => {
      const req = session.request({ ":path": "/healthz" });
      req.on("response", (headers) => resolve(String(headers[":status"])));
      req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
      req.on("close", () => resolve("closed"));
      req.resume();
      req.end();
    });
  }

  it("keeps a connection whose PING answer arrived while the loop was blocked past the PING deadline", async () => {
    const before = await closedFor(server.port, "keepalive");
    const session = await connectH2(server.baseUrl);
    session.on("error", () => {});
    // An upload left open: the connection is not idle.
    const upload = grpcRequest(session, "/chat.ChatService/UploadMessages");
    upload.on("error", () => {});
    let closed = false;
    session.once("close", () => {
      closed = true;
    });
    const blocked = new Promise<void>((resolve) => {
      session.once("ping", () => {
        // node:http2 answers the PING after this listener returns: by then the server's loop
        // is blocked (the busy-wait gives its signal handler the time to start).
        process.kill(server.pid as number, "SIGUSR2");
        const end = performance.now() + 300;
        while (performance.now() < end) {
          // busy
        }
        resolve();
      });
    });
    await within(blocked, 5_000, "the server's first keepalive PING");
    await new Promise((r) => setTimeout(r, BLOCK_MS + 1_000));
    expect(closed).toBe(false);
    expect(await within(healthz(session), 5_000, "GET /healthz after the block")).toBe("200");
    expect(server.stderr).toContain("loop unblocked");
    expect(await closedFor(server.port, "keepalive")).toBe(before);
    session.destroy();
  });

  it("serves a stream that arrived while the loop was blocked past the idle deadline", async () => {
    const session = await connectH2(server.baseUrl);
    session.on("error", () => {});
    let goaway = false;
    session.once("goaway", () => {
      goaway = true;
    });
    await new Promise((r) => setTimeout(r, 600));
    await blockLoop(server);
    expect(await within(healthz(session), BLOCK_MS + 5_000, "GET /healthz")).toBe("200");
    expect(goaway).toBe(false);
    // Idle again: closed with GOAWAY as before.
    await within(
      new Promise((resolve) => session.once("goaway", resolve)),
      5_000,
      "GOAWAY once the connection is idle",
    );
    session.destroy();
  });
});
