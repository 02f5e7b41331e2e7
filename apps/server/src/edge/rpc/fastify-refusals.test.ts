import http from "node:http";
import net from "node:net";
import fastify from "fastify";
import pino from "pino";
import { afterEach, describe, expect, test } from "vitest";
import { ConnectionGuard } from "../transport/connection-guard.js";
import { fastifyRefusals } from "./fastify-refusals.js";
import { notFoundHandler } from "./not-found.js";
import { connectErrorBody, encodeGrpcMessage, refuse, refuseStream } from "./refusal.js";

const silent = pino({ level: "silent" });
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Raw bytes in, everything the server answers until it closes the connection. */
async function rawExchange(port: number, send: string, timeoutMs = 5_000): Promise<string> {
  const socket = net.connect(port, "127.0.0.1");
  let answer = "";
  socket.on("data", (chunk) => {
    answer += chunk.toString("latin1");
  });
  socket.write(send);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no close in ${timeoutMs} ms`)), timeoutMs);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on("error", () => {});
  });
  return answer;
}

function bodyOf(answer: string): unknown {
  return JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
}

describe("the connection guard's answers to Node's connection-level errors, as Connect error bodies", () => {
  // A plain node:http server (it listens, so Node's request timeout checker runs) with the
  // clientError listener the one-port server installs (Fastify's own clientErrorHandler defers
  // to it).
  async function serve(options: http.ServerOptions): Promise<number> {
    const server = http.createServer(options, (_req, res) => res.end("ok"));
    const guard = new ConnectionGuard(
      {
        firstByteTimeoutMs: 10_000,
        http1HeadersTimeoutMs: 300,
        maxHeaderBytes: 1024,
        readMaxBytes: 1 << 20,
        maxConnections: 0,
        maxConnectionsPerIp: 0,
        http2ResetBurst: 50,
        http2ResetRatePerS: 10,
      },
      { refuse, refuseStream, errorBody: connectErrorBody },
    );
    server.on("clientError", guard.answerClientError);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    return (server.address() as net.AddressInfo).port;
  }

  test("408 deadline_exceeded for a request whose headers do not arrive in time", async () => {
    const port = await serve({
      headersTimeout: 300,
      requestTimeout: 400,
      connectionsCheckingInterval: 50,
    });
    const answer = await rawExchange(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a");
    expect(answer).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(answer).toMatch(/\r\nContent-Type: application\/json\r\n/);
    expect(answer).toMatch(/\r\nConnection: close\r\n/);
    expect(bodyOf(answer)).toEqual({
      code: "deadline_exceeded",
      message: "request headers not received within 300 ms (HTTP1_HEADERS_TIMEOUT_MS)",
    });
  });

  test("431 resource_exhausted for a header block over maxHeaderSize", async () => {
    const port = await serve({ maxHeaderSize: 1024 });
    const answer = await rawExchange(
      port,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2048)}\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(bodyOf(answer)).toEqual({
      code: "resource_exhausted",
      message: "request headers are over MAX_HEADER_BYTES (1024)",
    });
  });

  test("400 invalid_argument for bytes that are not HTTP", async () => {
    const port = await serve({});
    const answer = await rawExchange(port, "HELLO THERE\r\n\r\n");
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(bodyOf(answer)).toEqual({
      code: "invalid_argument",
      message: "malformed HTTP/1.1 request",
    });
  });
});

describe("errorHandler: Fastify's own errors as Connect error bodies", () => {
  async function app() {
    const refusals = fastifyRefusals(silent);
    const instance = fastify({ frameworkErrors: refusals.frameworkErrors });
    instance.setErrorHandler(refusals.errorHandler);
    instance.post("/text", { bodyLimit: 16 }, async () => "ok");
    instance.get("/boom", async () => {
      throw new Error("secret detail from a library");
    });
    closers.push(() => instance.close());
    return instance;
  }

  test("413 from a body parser: resource_exhausted", async () => {
    const res = await (await app()).inject({
      method: "POST",
      url: "/text",
      headers: { "content-type": "text/plain" },
      payload: "x".repeat(100),
    });
    expect(res.statusCode).toBe(413);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.json()).toEqual({
      code: "resource_exhausted",
      message: "Request body is too large",
    });
  });

  test("415 for a content type no parser takes: unimplemented", async () => {
    const res = await (await app()).inject({
      method: "POST",
      url: "/text",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: "a=b",
    });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toMatchObject({ code: "unimplemented" });
    expect(res.body).not.toMatch(/FST_|statusCode/);
  });

  test("a gRPC caller gets a trailers-only answer instead", async () => {
    const res = await (await app()).inject({
      method: "POST",
      url: "/text",
      headers: { "content-type": "application/grpc" },
      payload: "x".repeat(100),
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["grpc-status"]).toBe("12");
    expect(res.body).toBe("");
  });

  test("500: internal 'internal error', the error's text stays on the server", async () => {
    const res = await (await app()).inject({ method: "GET", url: "/boom" });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ code: "internal", message: "internal error" });
  });

  test("a URL Fastify cannot decode: 400 invalid_argument", async () => {
    const res = await (await app()).inject({ method: "GET", url: "/%zz" });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: "invalid_argument" });
  });
});

describe("notFoundHandler: an unknown method is Unimplemented in the caller's protocol", () => {
  async function app() {
    const instance = fastify();
    instance.setNotFoundHandler(notFoundHandler);
    closers.push(() => instance.close());
    return instance;
  }
  const UNKNOWN = "/chat.ChatService/NoSuchMethod";

  test("Connect (and any other caller): HTTP 404 with the Connect error body", async () => {
    for (const contentType of ["application/json", "application/proto", undefined]) {
      const res = await (await app()).inject({
        method: "POST",
        url: UNKNOWN,
        ...(contentType === undefined ? {} : { headers: { "content-type": contentType } }),
        payload: "{}",
      });
      expect(res.statusCode, contentType).toBe(404);
      expect(res.headers["content-type"]).toBe("application/json");
      expect(res.json()).toEqual({
        code: "unimplemented",
        message: `unknown method POST ${UNKNOWN}`,
      });
    }
  });

  test("gRPC and gRPC-Web: trailers-only, grpc-status 12 (UNIMPLEMENTED) naming the method", async () => {
    for (const contentType of ["application/grpc", "application/grpc-web+proto"]) {
      const res = await (await app()).inject({
        method: "POST",
        url: "/chat.NoSuchService/SendMessage",
        headers: { "content-type": contentType },
        payload: Buffer.alloc(5),
      });
      expect(res.statusCode, contentType).toBe(200);
      expect(res.headers["content-type"]).toBe(contentType);
      expect(res.headers["grpc-status"]).toBe("12");
      expect(res.headers["grpc-message"]).toBe(
        "unknown method POST /chat.NoSuchService/SendMessage",
      );
      expect(res.body).toBe("");
    }
  });

  test("quotes at most 200 characters of the path, and not its query", async () => {
    const long = `/${"x".repeat(300)}`;
    const res = await (await app()).inject({ method: "GET", url: `${long}?secret=1` });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({
      code: "unimplemented",
      message: `unknown method GET ${long.slice(0, 200)}…`,
    });
  });
});

describe("encodeGrpcMessage (gRPC over HTTP/2 spec, Status-Message)", () => {
  test("printable ASCII but % as it is; everything else as UTF-8 %XX", () => {
    expect(encodeGrpcMessage("missing bearer token (Authorization: Bearer <token>)")).toBe(
      "missing bearer token (Authorization: Bearer <token>)",
    );
    expect(encodeGrpcMessage("100% sure")).toBe("100%25 sure");
    expect(encodeGrpcMessage("é\n")).toBe("%C3%A9%0A");
    for (const text of ["a/b;c=d?e", "ünïcödé ✓", "%41", "tab\there"]) {
      expect(decodeURIComponent(encodeGrpcMessage(text))).toBe(text);
    }
  });
});
