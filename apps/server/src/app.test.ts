import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { HealthCheckRequestSchema } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createTestCertificate, type TestCertificate } from "../test/certificate.js";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";
import { LogTail } from "./telemetry/log-tail.js";

describe("buildApp", () => {
  it("gives HTTP/2 sessions one owner: the server has one `session` listener", async () => {
    const app = await buildApp(loadConfig([], { STORE: "memory" }), {
      logger: pino({ level: "silent" }),
      logTail: new LogTail(),
    });
    await app.ready();
    // edge/transport/http2-sessions.ts: window, reset budget, keepalive, idle and the shutdown
    // GOAWAY are one listener's work; a second owner would be a second listener.
    expect(app.server.listenerCount("session")).toBe(1);
    await app.close();
  });
});

/** One envelope (flags 0) around `data`. */
function envelope(data: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(data.byteLength, 1);
  return Buffer.concat([head, data]);
}

/** One call over h2c: its response headers, trailers and grpc-status. */
async function h2Call(
  port: number,
  path: string,
  contentType: string,
  body: Uint8Array,
  ca?: Buffer,
): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders }> {
  const session =
    ca === undefined
      ? http2.connect(`http://127.0.0.1:${port}`)
      : http2.connect(`https://127.0.0.1:${port}`, { ca });
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": contentType,
        te: "trailers",
      });
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("response", (h) => {
        headers = h;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("error", reject);
      stream.on("close", () => resolve({ headers, trailers }));
      stream.resume();
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

describe("the lean lane (edge/rpc/lean-lane.ts)", () => {
  /** The calls that reach Fastify (its onRequest hook), by path. */
  async function fastifySees(leanLane: "on" | "off", cert?: TestCertificate) {
    const tls = cert === undefined ? {} : { TLS_CERT: cert.certFile, TLS_KEY: cert.keyFile };
    const app = await buildApp(loadConfig([], { STORE: "memory", LEAN_LANE: leanLane, ...tls }), {
      logger: pino({ level: "silent" }),
      logTail: new LogTail(),
    });
    const seen: string[] = [];
    app.addHook("onRequest", async (req) => {
      seen.push(req.url);
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const port = (app.server.address() as AddressInfo).port;
    const send = toBinary(
      SendMessageRequestSchema,
      create(SendMessageRequestSchema, { room: "lean", user: "u", content: "hi" }),
    );
    const check = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {}));
    const codes: Record<string, unknown> = {};
    const call = async (name: string, path: string, type: string, body: Uint8Array) => {
      const { headers, trailers } = await h2Call(port, path, type, envelope(body), cert?.ca);
      // gRPC-Web's status is in the body's trailer envelope: its HTTP status here.
      codes[name] =
        trailers["grpc-status"] ?? headers["grpc-status"] ?? `http ${headers[":status"]}`;
    };
    await call("send grpc", "/chat.ChatService/SendMessage", "application/grpc", send);
    await call("send grpc+proto", "/chat.ChatService/SendMessage", "application/grpc+proto", send);
    await call("check grpc", "/grpc.health.v1.Health/Check", "application/grpc", check);
    await call("send grpc-web", "/chat.ChatService/SendMessage", "application/grpc-web", send);
    await call(
      "history grpc",
      "/chat.ChatService/GetHistory",
      "application/grpc",
      new Uint8Array(),
    );
    await app.close();
    return { seen, codes };
  }

  it("serves the hot RPCs over gRPC on HTTP/2 beneath Fastify, and nothing else", async () => {
    const { seen, codes } = await fastifySees("on");
    // Every call answered (GetHistory of an empty request: invalid_argument, 3).
    expect(codes).toEqual({
      "send grpc": "0",
      "send grpc+proto": "0",
      "check grpc": "0",
      "send grpc-web": "http 200",
      "history grpc": "3",
    });
    // Only the calls the lane leaves (gRPC-Web, a method that is not hot) reach Fastify.
    expect(seen).toEqual(["/chat.ChatService/SendMessage", "/chat.ChatService/GetHistory"]);
  });

  it("does the same over TLS (ALPN h2)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lean-tls-"));
    try {
      const { seen, codes } = await fastifySees("on", createTestCertificate(dir));
      expect(Object.values(codes)).toEqual(["0", "0", "0", "http 200", "3"]);
      expect(seen).toEqual(["/chat.ChatService/SendMessage", "/chat.ChatService/GetHistory"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("leaves every call to Fastify with LEAN_LANE=off", async () => {
    const { seen, codes } = await fastifySees("off");
    expect(Object.values(codes)).toEqual(["0", "0", "0", "http 200", "3"]);
    expect(seen).toHaveLength(5);
  });
});
