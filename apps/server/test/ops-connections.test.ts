// HTTP/2 connection hygiene: keepalive PINGs drop a peer that stopped answering, an idle
// connection is closed with GOAWAY, oversized headers are refused, and a PING flood does not
// keep the server from serving others.
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerProcess } from "./harness.js";
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
