// MAX_HEADER_BYTES caps a request's header block on both HTTP versions of the one port.
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { Code, chatClient, connectErrorOf } from "./support.js";

/** The :status an HTTP/2 GET /healthz with one `x-pad` header of `bytes` gets, or how it failed. */
function h2Status(baseUrl: string, bytes: number): Promise<string> {
  const session = http2.connect(baseUrl);
  session.on("error", () => {});
  return new Promise<string>((resolve) => {
    const req = session.request({ ":path": "/healthz", "x-pad": "a".repeat(bytes) });
    req.on("response", (headers) => resolve(String(headers[":status"])));
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
    req.on("close", () => resolve("closed"));
    req.end();
  }).finally(() => session.destroy());
}

describe("MAX_HEADER_BYTES=4096", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ store: "memory", env: { MAX_HEADER_BYTES: "4096" } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("answers 431 over HTTP/1.1 for a larger header block, and serves a smaller one", async () => {
    const big = await fetch(`${server.baseUrl}/healthz`, {
      headers: { "x-pad": "a".repeat(6_000) },
    });
    expect(big.status).toBe(431);
    expect(await big.json()).toEqual({
      code: "resource_exhausted",
      message: "request headers are over MAX_HEADER_BYTES (4096)",
    });
    const small = await fetch(`${server.baseUrl}/healthz`, {
      headers: { "x-pad": "a".repeat(2_000) },
    });
    expect(small.status).toBe(200);
  });

  it("refuses a larger header block over HTTP/2, and serves a smaller one", async () => {
    expect(await h2Status(server.baseUrl, 6_000)).not.toBe("200");
    expect(await h2Status(server.baseUrl, 2_000)).toBe("200");
  });

  it("answers a gRPC call with too large headers with ResourceExhausted", async () => {
    const grpc = chatClient(server.baseUrl, {
      protocol: "grpc",
      httpVersion: "2",
      useBinaryFormat: true,
    });
    const err = await connectErrorOf(
      grpc.listRooms({}, { headers: { "x-pad": "a".repeat(6_000) } }),
    );
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.message).toMatch(/request headers are \d+ bytes, over MAX_HEADER_BYTES \(4096\)/);
    await expect(
      grpc.listRooms({}, { headers: { "x-pad": "a".repeat(2_000) } }),
    ).resolves.toBeDefined();
  });
});
