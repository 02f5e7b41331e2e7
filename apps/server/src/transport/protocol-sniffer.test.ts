import { once } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import {
  ProtocolSniffer,
  type ProtocolSnifferOptions,
  type SniffedProtocol,
} from "./protocol-sniffer.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** An empty SETTINGS frame (RFC 9113 §6.5): length 0, type 4, flags 0, stream 0. */
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

let server: ProtocolSniffer | undefined;

afterEach(async () => {
  const s = server;
  server = undefined;
  if (s === undefined) return;
  await new Promise((resolve) => s.close(resolve));
});

/** A sniffer on a free loopback port answering every request with `<protocol> <path>`. */
async function start(options: ProtocolSnifferOptions = {}): Promise<{
  sniffer: ProtocolSniffer;
  port: number;
  protocols: SniffedProtocol[];
}> {
  const sniffer = new ProtocolSniffer(options, (req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(`${req.httpVersion} ${req.url}`);
  });
  server = sniffer;
  const protocols: SniffedProtocol[] = [];
  sniffer.on("protocol", (_socket: net.Socket, protocol: SniffedProtocol) => {
    protocols.push(protocol);
  });
  // Sessions end with the test's clients; a session left open would hold close().
  sniffer.on("session", (session: http2.Http2Session) => {
    sniffer.once("close", () => session.destroy());
  });
  sniffer.listen(0, "127.0.0.1");
  await once(sniffer, "listening");
  return { sniffer, port: (sniffer.address() as net.AddressInfo).port, protocols };
}

/** Sends `pieces` over a raw TCP connection, `gapMs` apart; resolves with everything read. */
async function raw(port: number, pieces: (string | Buffer)[], gapMs = 30): Promise<Buffer> {
  const socket = net.connect(port, "127.0.0.1");
  await once(socket, "connect");
  socket.setNoDelay(true);
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  for (const piece of pieces) {
    socket.write(piece);
    await sleep(gapMs);
  }
  await sleep(100);
  socket.destroy();
  return Buffer.concat(chunks);
}

describe("ProtocolSniffer", () => {
  it("runs h2c sessions on the TCP socket itself, not on a JSStreamSocket", async () => {
    const { sniffer, port, protocols } = await start();
    const sessions: http2.ServerHttp2Session[] = [];
    sniffer.on("session", (session: http2.ServerHttp2Session) => sessions.push(session));
    const client = http2.connect(`http://127.0.0.1:${port}`);
    const req = client.request({ ":path": "/h2" });
    req.setEncoding("utf8");
    let body = "";
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    await once(req, "end");
    expect(body).toBe("2.0 /h2");
    expect(protocols).toEqual(["h2c"]);
    expect(sessions).toHaveLength(1);
    const socket = sessions[0]?.socket as unknown as { remoteAddress?: string; stream?: unknown };
    // node:http2 wraps a socket whose handle is not a StreamBase in a JSStreamSocket, which has no
    // address of its own and keeps the real socket in `stream` (what httpolyglot led to).
    expect(socket.remoteAddress).toBe("127.0.0.1");
    expect(socket.stream).toBeUndefined();
    client.close();
  });

  it("serves HTTP/1.1 and forwards request listeners to both inner servers", async () => {
    const { sniffer, port, protocols } = await start();
    const seen: string[] = [];
    const listener = (req: http.IncomingMessage) => seen.push(`${req.httpVersion} ${req.url}`);
    sniffer.on("request", listener);
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get(`http://127.0.0.1:${port}/h1`, { agent: false }, (res) => {
          res.setEncoding("utf8");
          let text = "";
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => resolve(text));
        })
        .on("error", reject);
    });
    expect(body).toBe("1.1 /h1");
    const client = http2.connect(`http://127.0.0.1:${port}`);
    const req = client.request({ ":path": "/h2" });
    req.resume();
    await once(req, "end");
    client.destroy();
    expect(seen).toEqual(["1.1 /h1", "2.0 /h2"]);
    expect(protocols).toEqual(["http/1.1", "h2c"]);
    sniffer.off("request", listener);
    expect(sniffer.http1.listeners("request")).not.toContain(listener);
    expect(sniffer.http2.listeners("request")).not.toContain(listener);
  });

  it("waits for the whole preface when it arrives a few bytes at a time", async () => {
    const { port, protocols } = await start();
    const answer = await raw(port, [
      PREFACE.subarray(0, 1),
      PREFACE.subarray(1, 5),
      PREFACE.subarray(5, 23),
      Buffer.concat([PREFACE.subarray(23), EMPTY_SETTINGS]),
    ]);
    expect(protocols).toEqual(["h2c"]);
    // The server's connection preface is a SETTINGS frame (type 4 on stream 0).
    expect(answer.length).toBeGreaterThanOrEqual(9);
    expect(answer[3]).toBe(4);
    expect(answer.readUInt32BE(5)).toBe(0);
  });

  it("hands a request that starts like the preface to HTTP/1.1 once it stops matching", async () => {
    const { port, protocols } = await start();
    const answer = await raw(port, ["P", "UT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"]);
    expect(protocols).toEqual(["http/1.1"]);
    expect(answer.toString("latin1")).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n1\.1 \/p$/);
  });

  it("closes a TLS ClientHello on the plain port without an answer (https:// against http://)", async () => {
    const { port, protocols } = await start();
    const answer = await raw(port, [Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00])]);
    expect(protocols).toEqual(["tls"]);
    expect(answer.length).toBe(0);
  });

  it("hands other bytes to HTTP/1.1, whose clientError is forwarded", async () => {
    const { sniffer, port, protocols } = await start();
    const errors: string[] = [];
    sniffer.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => {
      errors.push(err.code ?? "");
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    });
    const answer = await raw(port, [Buffer.from([0x00, 0x01, 0x02, 0x03, 0x0d, 0x0a, 0x0d, 0x0a])]);
    expect(protocols).toEqual(["http/1.1"]);
    expect(errors).toHaveLength(1);
    expect(answer.toString("latin1")).toMatch(/^HTTP\/1\.1 400 /);
  });

  it("survives a peer that resets in the middle of the preface", async () => {
    const { port, protocols } = await start();
    for (let i = 0; i < 5; i++) {
      const socket = net.connect(port, "127.0.0.1");
      await once(socket, "connect");
      socket.write(PREFACE.subarray(0, 10));
      await sleep(20);
      socket.resetAndDestroy();
    }
    await sleep(50);
    expect(protocols).toEqual([]);
    // Still serving (an unhandled socket error would have thrown in this process).
    const answer = await raw(port, [PREFACE, EMPTY_SETTINGS]);
    expect(answer[3]).toBe(4);
  });

  it("starts an h2c session when startSession runs it, with every byte read meanwhile; a peer gone meanwhile is skipped", async () => {
    const pending: (() => void)[] = [];
    const { sniffer, port, protocols } = await start({ startSession: (run) => pending.push(run) });
    let sessions = 0;
    sniffer.on("session", () => sessions++);
    const socket = net.connect(port, "127.0.0.1");
    await once(socket, "connect");
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.write(Buffer.concat([PREFACE, EMPTY_SETTINGS]));
    await sleep(100);
    // Identified, not started: no session, no answer yet.
    expect(protocols).toEqual(["h2c"]);
    expect(pending).toHaveLength(1);
    expect(sessions).toBe(0);
    expect(chunks).toHaveLength(0);
    // A request sent while it waits is read with the rest when the session starts.
    socket.write(
      Buffer.concat([
        Buffer.from([0, 0, 6, 1, 0x05, 0, 0, 0, 1]), // HEADERS, END_STREAM | END_HEADERS, stream 1
        Buffer.from([0x82, 0x86, 0x84, 0x41, 0x01, 0x78]), // GET http / :authority x
      ]),
    );
    await sleep(50);
    pending.shift()?.();
    const deadline = performance.now() + 2_000;
    while (!Buffer.concat(chunks).includes("2.0 /") && performance.now() < deadline)
      await sleep(10);
    expect(sessions).toBe(1);
    expect(Buffer.concat(chunks).includes("2.0 /")).toBe(true);
    socket.destroy();
    // Gone before its start: skipped, and its reset is no error in this process.
    const gone = net.connect(port, "127.0.0.1");
    await once(gone, "connect");
    gone.write(PREFACE);
    await sleep(50);
    gone.resetAndDestroy();
    await sleep(50);
    expect(pending).toHaveLength(1);
    pending.shift()?.();
    await sleep(50);
    expect(sessions).toBe(1);
  });
});
