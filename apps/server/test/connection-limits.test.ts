// Connection caps (MAX_CONNECTIONS_PER_IP, MAX_CONNECTIONS): the connection over a cap gets a
// refusal in its own protocol and is closed; /metrics counts it; a client from another address
// is served within 1 s throughout.
import http2 from "node:http2";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { closedFor, LegitProbe } from "./legit-probe.js";
import { within } from "./support.js";

const CAP = 4;
const FIRST_BYTE_MS = 1_000;

/** `CAP` connections from 127.0.0.1 that made one request and are kept alive. */
async function hold(port: number, count: number): Promise<net.Socket[]> {
  const sockets = Array.from({ length: count }, () => {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    return socket;
  });
  await Promise.all(
    sockets.map((s) => new Promise<void>((resolve) => s.once("data", () => resolve()))),
  );
  return sockets;
}

/** A raw HTTP/1.1 exchange on a new connection: the answer, and how long until it closed. */
function http1(port: number, request: string): Promise<{ text: string; ms: number }> {
  const started = performance.now();
  const socket = net.connect(port, "127.0.0.1");
  let text = "";
  socket.setEncoding("latin1");
  socket.on("data", (chunk: string) => {
    text += chunk;
  });
  socket.on("error", () => {});
  socket.write(request);
  return new Promise((resolve) =>
    socket.once("close", () => resolve({ text, ms: performance.now() - started })),
  );
}

const CONNECT_POST =
  "POST /chat.ChatService/ListRooms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

/** One h2c call on a new connection: the response headers, whether they ended the stream, GOAWAY. */
async function h2call(
  port: number,
  contentType: string,
  body: Buffer | string,
  path = "/chat.ChatService/ListRooms",
): Promise<{
  headers: http2.IncomingHttpHeaders;
  endStream: boolean;
  body: string;
  goaway: number | undefined;
  ms: number;
}> {
  const started = performance.now();
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  let goaway: number | undefined;
  session.on("goaway", (code) => {
    goaway = code;
  });
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": contentType,
  });
  stream.on("error", () => {});
  let headers: http2.IncomingHttpHeaders = {};
  let endStream = false;
  let text = "";
  stream.on("response", (h, flags) => {
    headers = h;
    endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
  });
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    text += chunk;
  });
  stream.end(body);
  await within(
    new Promise<void>((resolve) => session.once("close", () => resolve())),
    10_000,
    "the server closing the HTTP/2 connection",
  );
  return { headers, endStream, body: text, goaway, ms: performance.now() - started };
}

/** ListRooms through @grpc/grpc-js (generic client, empty request): the status it reports. */
function grpcJsListRooms(port: number): Promise<grpc.StatusObject> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise<grpc.StatusObject>((resolve) => {
    const call = client.makeUnaryRequest(
      "/chat.ChatService/ListRooms",
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      () => {},
    );
    call.on("status", (status: grpc.StatusObject) => resolve(status));
  }).finally(() => client.close());
}

describe(`MAX_CONNECTIONS_PER_IP=${CAP}`, () => {
  let server: ServerProcess;
  let held: net.Socket[] = [];
  beforeAll(async () => {
    server = await startServer({
      store: "memory",
      env: {
        MAX_CONNECTIONS_PER_IP: String(CAP),
        FIRST_BYTE_TIMEOUT_MS: String(FIRST_BYTE_MS),
      },
    });
  });
  afterEach(() => {
    for (const socket of held) socket.destroy();
    held = [];
  });
  afterAll(async () => {
    await server?.close();
  });

  it("refuses the connection over the cap in each protocol, and serves other addresses", async () => {
    const before = await closedFor(server.port, "limit_per_ip");
    const probe = new LegitProbe(server.port, { localAddress: "127.0.0.2" });
    held = await hold(server.port, CAP);

    // HTTP/1.1, Connect: 429 with the Connect error body, and the connection closes.
    const h1 = await http1(server.port, CONNECT_POST);
    expect(h1.text).toMatch(/^HTTP\/1.1 429 /);
    expect(h1.text).toMatch(/\r\nconnection: close\r\n/i);
    expect(JSON.parse(h1.text.split("\r\n\r\n")[1] as string)).toEqual({
      code: "resource_exhausted",
      message: `too many connections from 127.0.0.1 (MAX_CONNECTIONS_PER_IP ${CAP})`,
    });
    expect(h1.ms).toBeLessThan(1_000);

    // h2c, gRPC: a trailers-only resource_exhausted (one HEADERS frame with END_STREAM), GOAWAY.
    const g = await h2call(server.port, "application/grpc", Buffer.alloc(5));
    expect(g.headers[":status"]).toBe(200);
    expect(g.headers["grpc-status"]).toBe("8");
    expect(decodeURIComponent(String(g.headers["grpc-message"]))).toBe(
      `too many connections from 127.0.0.1 (MAX_CONNECTIONS_PER_IP ${CAP})`,
    );
    expect(g.endStream).toBe(true);
    expect(g.goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(g.ms).toBeLessThan(FIRST_BYTE_MS + 1_000);

    // The same for a hot RPC over gRPC, which the lean lane serves beneath Fastify
    // (edge/rpc/lean-lane.ts): the transport refuses it before either lane.
    for (const path of ["/chat.ChatService/SendMessage", "/chat.ChatService/SubscribeMessages"]) {
      const lean = await h2call(server.port, "application/grpc", Buffer.alloc(5), path);
      expect(lean.headers["grpc-status"], path).toBe("8");
      expect(decodeURIComponent(String(lean.headers["grpc-message"])), path).toBe(
        `too many connections from 127.0.0.1 (MAX_CONNECTIONS_PER_IP ${CAP})`,
      );
      expect(lean.endStream, path).toBe(true);
      expect(lean.goaway, path).toBe(http2.constants.NGHTTP2_NO_ERROR);
    }

    // h2c, Connect: 429 with the Connect error body.
    const c = await h2call(server.port, "application/json", "{}");
    expect(c.headers[":status"]).toBe(429);
    expect(JSON.parse(c.body)).toMatchObject({ code: "resource_exhausted" });

    // A gRPC implementation that is not ours reads the same status.
    const status = await grpcJsListRooms(server.port);
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toBe(
      `too many connections from 127.0.0.1 (MAX_CONNECTIONS_PER_IP ${CAP})`,
    );

    // A connection over the cap that sends nothing is closed within the refusal grace.
    const silent = await http1(server.port, "");
    expect(silent.text).toBe("");
    expect(silent.ms).toBeLessThan(FIRST_BYTE_MS + 1_000);

    const result = await probe.stop();
    expect(result.failures).toEqual([]);
    expect(result.served).toBeGreaterThan(3);
    expect(result.maxMs).toBeLessThan(1_000);
    // /metrics from 127.0.0.1 needs a free place under the cap.
    for (const socket of held) socket.destroy();
    held = [];
    await new Promise((r) => setTimeout(r, 200));
    expect(await closedFor(server.port, "limit_per_ip")).toBeGreaterThanOrEqual(before + 5);
  });

  it("admits the address again once its connections close", async () => {
    held = await hold(server.port, CAP);
    for (const socket of held) socket.destroy();
    held = [];
    await new Promise((r) => setTimeout(r, 200));
    const h1 = await http1(
      server.port,
      CONNECT_POST.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"),
    );
    expect(h1.text).toMatch(/^HTTP\/1.1 200 /);
  });
});

describe(`MAX_CONNECTIONS=${CAP}`, () => {
  let server: ServerProcess;
  let held: net.Socket[] = [];
  beforeAll(async () => {
    server = await startServer({
      store: "memory",
      env: { MAX_CONNECTIONS: String(CAP), MAX_CONNECTIONS_PER_IP: "0" },
    });
  });
  afterAll(async () => {
    for (const socket of held) socket.destroy();
    await server?.close();
  });

  it("refuses the connection over the total cap with unavailable, and serves again after", async () => {
    held = await hold(server.port, CAP);
    const h1 = await http1(server.port, CONNECT_POST);
    expect(h1.text).toMatch(/^HTTP\/1.1 503 /);
    expect(JSON.parse(h1.text.split("\r\n\r\n")[1] as string)).toEqual({
      code: "unavailable",
      message: `the server is at its connection limit (MAX_CONNECTIONS ${CAP}); retry later`,
    });
    const g = await h2call(server.port, "application/grpc", Buffer.alloc(5));
    expect(g.headers["grpc-status"]).toBe("14");
    expect(g.endStream).toBe(true);
    // A hot RPC over gRPC (the lean lane's) is refused the same way.
    const lean = await h2call(
      server.port,
      "application/grpc",
      Buffer.alloc(5),
      "/chat.ChatService/SendMessage",
    );
    expect(lean.headers["grpc-status"]).toBe("14");
    expect(lean.endStream).toBe(true);
    const status = await grpcJsListRooms(server.port);
    expect(status.code).toBe(grpc.status.UNAVAILABLE);

    for (const socket of held) socket.destroy();
    held = [];
    await new Promise((r) => setTimeout(r, 200));
    const probe = new LegitProbe(server.port);
    await new Promise((r) => setTimeout(r, 300));
    const result = await probe.stop();
    expect(result.failures).toEqual([]);
    expect(result.maxMs).toBeLessThan(1_000);
    expect(await closedFor(server.port, "limit_total")).toBeGreaterThanOrEqual(3);
  });
});
