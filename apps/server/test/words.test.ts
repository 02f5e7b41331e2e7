// What a caller reads when the server refuses a request it cannot take: JSON it cannot decode
// says what was expected, and a limit names the setting that sets it (READ_MAX_BYTES, not
// connect-es's `readMaxBytes`). Requests are made as curl makes them: fetch with a hand-written
// body, and raw gRPC frames.
import { createHmac } from "node:crypto";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { frame, rawCall } from "./raw-call.js";

const READ_MAX_BYTES = 2048;
const MAX_TIMEOUT_MS = 5000;

let server: ServerProcess;
beforeAll(async () => {
  server = await startServer({
    store: "memory",
    env: { READ_MAX_BYTES: String(READ_MAX_BYTES), MAX_TIMEOUT_MS: String(MAX_TIMEOUT_MS) },
  });
});
afterAll(async () => {
  await server?.close();
});

/** A Connect unary POST of `body`; the HTTP status and the error JSON. */
async function post(
  method: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<{ status: number; code: string | undefined; message: string | undefined }> {
  const res = await fetch(`${server.baseUrl}/chat.ChatService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  const error = (await res.json()) as { code?: string; message?: string };
  return { status: res.status, code: error.code, message: error.message };
}

/** SendMessageRequest's fields, in the contract's order, by their JSON names. */
const SEND_FIELDS = "user, content, room, clientMessageId";

describe("a JSON body the server cannot decode says what was expected (Connect, 400)", () => {
  it.each([
    [
      "not JSON",
      "not json",
      /^expected a JSON object for chat.SendMessageRequest: the body is not JSON \(Unexpected token/,
    ],
    [
      "an empty body",
      "",
      /^expected a JSON object for chat.SendMessageRequest: the body is not JSON \(Unexpected end of JSON input\)$/,
    ],
    ["an array", "[1, 2]", /^expected a JSON object for chat.SendMessageRequest, got an array$/],
    ["null", "null", /^expected a JSON object for chat.SendMessageRequest, got null$/],
    [
      "a string",
      '"hello"',
      /^expected a JSON object for chat.SendMessageRequest, got a string \("hello"\)$/,
    ],
    ["a number", "42", /^expected a JSON object for chat.SendMessageRequest, got a number \(42\)$/],
    [
      "an unknown field",
      '{"room":"a","user":"b","content":"c","colour":"red"}',
      new RegExp(
        `^expected a JSON object for chat.SendMessageRequest: key "colour" is unknown \\(its fields: ${SEND_FIELDS}\\)$`,
      ),
    ],
    [
      "a field of the wrong type",
      '{"room":["a"],"user":"b","content":"c"}',
      /^expected a JSON object for chat.SendMessageRequest: field "room": expected string, got Array\(1\)$/,
    ],
  ])("%s", async (_, body, message) => {
    const answer = await post("SendMessage", body);
    expect(answer).toMatchObject({ status: 400, code: "invalid_argument" });
    expect(answer.message).toMatch(message);
  });

  it("a stream's access log line carries the same sentence as its reason", async () => {
    // (A unary request is decoded before the interceptors run, so it gets no access log line.)
    const requestId = "words-bad-json-stream";
    const res = await fetch(`${server.baseUrl}/chat.ChatService/SubscribeMessages`, {
      method: "POST",
      headers: {
        "content-type": "application/connect+json",
        "connect-timeout-ms": "4000",
        "x-request-id": requestId,
      },
      body: frame(Buffer.from("[]")),
    });
    await res.arrayBuffer();
    const line = await server.waitForRecord((r) => r.msg === "rpc" && r.requestId === requestId);
    expect(line).toMatchObject({
      method: "/chat.ChatService/SubscribeMessages",
      code: "InvalidArgument",
      error: "expected a JSON object for chat.SubscribeRequest, got an array",
    });
  });

  it("a field named by its proto name in the message, its JSON name in the sentence", async () => {
    const answer = await post("GetHistory", '{"room":"a","after_offset":"x"}');
    expect(answer).toEqual({
      status: 400,
      code: "invalid_argument",
      message:
        'expected a JSON object for chat.GetHistoryRequest: field "afterOffset": expected bigint (uint64): x out of range',
    });
  });

  it("on connect-es's own paths too: a Connect GET and a gzip body", async () => {
    const get = await fetch(
      `${server.baseUrl}/chat.ChatService/GetHistory?encoding=json&message=${encodeURIComponent("[]")}`,
    );
    expect(get.status).toBe(400);
    expect(await get.json()).toEqual({
      code: "invalid_argument",
      message: "expected a JSON object for chat.GetHistoryRequest, got an array",
    });
    const gzipped = await post("SendMessage", gzipSync('{"room":"a","colour":"red"}'), {
      "content-encoding": "gzip",
    });
    expect(gzipped).toEqual({
      status: 400,
      code: "invalid_argument",
      message: `expected a JSON object for chat.SendMessageRequest: key "colour" is unknown (its fields: ${SEND_FIELDS})`,
    });
  });

  it("in a stream: SubscribeMessages' request ends the stream with the sentence", async () => {
    const res = await fetch(`${server.baseUrl}/chat.ChatService/SubscribeMessages`, {
      method: "POST",
      headers: { "content-type": "application/connect+json", "connect-timeout-ms": "4000" },
      body: frame(Buffer.from("[]")),
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes[0]).toBe(0b10);
    expect(JSON.parse(bytes.subarray(5).toString())).toEqual({
      error: {
        code: "invalid_argument",
        message: "expected a JSON object for chat.SubscribeRequest, got an array",
      },
    });
  });
});

describe("a refusal names the setting a user sets", () => {
  const big = JSON.stringify({ room: "big", user: "u", content: "x".repeat(READ_MAX_BYTES * 4) });

  it("READ_MAX_BYTES: a gzip body that decompresses over it (Connect, 429)", async () => {
    const answer = await post("SendMessage", gzipSync(big), { "content-encoding": "gzip" });
    expect(answer.status).toBe(429);
    expect(answer.code).toBe("resource_exhausted");
    expect(answer.message).toMatch(new RegExp(`over READ_MAX_BYTES \\(${READ_MAX_BYTES}\\)$`));
    expect(answer.message).not.toMatch(/readMaxBytes/);
  });

  it("READ_MAX_BYTES: a gRPC envelope announcing more, and a SubscribeMessages envelope", async () => {
    const head = Buffer.alloc(5);
    head.writeUInt32BE(READ_MAX_BYTES + 1, 1);
    const grpc = await rawCall(server.baseUrl, {
      protocol: "grpc",
      http: "2",
      path: "/chat.ChatService/SendMessage",
      headers: { "content-type": "application/grpc", te: "trailers" },
      body: Buffer.concat([head, Buffer.alloc(READ_MAX_BYTES + 1)]),
      streamingResponse: false,
    });
    expect(grpc.code).toBe("resource_exhausted");
    expect(grpc.message).toBe(
      `the request message is ${READ_MAX_BYTES + 1} bytes, over READ_MAX_BYTES (${READ_MAX_BYTES})`,
    );
    const stream = await rawCall(server.baseUrl, {
      protocol: "connect",
      http: "1.1",
      path: "/chat.ChatService/SubscribeMessages",
      headers: { "content-type": "application/connect+json" },
      body: frame(Buffer.from(big)),
      streamingResponse: true,
    });
    expect(stream.code).toBe("resource_exhausted");
    expect(stream.message).toMatch(new RegExp(`over READ_MAX_BYTES \\(${READ_MAX_BYTES}\\)$`));
  });

  it("MAX_TIMEOUT_MS: a longer deadline, over Connect and gRPC", async () => {
    const connect = await post("GetHistory", '{"room":"a"}', { "connect-timeout-ms": "60000" });
    expect(connect).toEqual({
      status: 400,
      code: "invalid_argument",
      message: `the call's timeout of 60000 ms is over MAX_TIMEOUT_MS (${MAX_TIMEOUT_MS} ms)`,
    });
    const grpc = await rawCall(server.baseUrl, {
      protocol: "grpc",
      http: "2",
      path: "/chat.ChatService/GetHistory",
      headers: { "content-type": "application/grpc", te: "trailers", "grpc-timeout": "60S" },
      body: frame(new Uint8Array()),
      streamingResponse: false,
    });
    expect(grpc.code).toBe("invalid_argument");
    expect(grpc.message).toBe(
      `the call's timeout of 60000 ms is over MAX_TIMEOUT_MS (${MAX_TIMEOUT_MS} ms)`,
    );
  });
});

describe("a refused token is told why in a sentence (unauthenticated, HTTP 401)", () => {
  let open: ServerProcess;
  const secret = "words-test-secret-0123456789";
  beforeAll(async () => {
    open = await startServer({ store: "memory", env: { AUTH_JWT_SECRET: secret } });
  });
  afterAll(async () => {
    await open?.close();
  });

  const call = async (token: string) => {
    const res = await fetch(`${open.baseUrl}/chat.ChatService/ListRooms`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: "{}",
    });
    return { status: res.status, ...((await res.json()) as { code: string; message: string }) };
  };
  /** An HS256 JWT signed with `key`, made by hand as any client library would. */
  const jwt = (claims: Record<string, unknown>, key: string) => {
    const part = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
    return `${body}.${createHmac("sha256", key).update(body).digest("base64url")}`;
  };

  it("not a JWT (jose's jws_invalid), another key, expired", async () => {
    const now = Math.floor(Date.now() / 1000);
    const garbled = await call("abc");
    expect(garbled).toMatchObject({ status: 401, code: "unauthenticated" });
    expect(garbled.message).toMatch(
      /^invalid token: it is not a well-formed JWT \(three base64url parts, header\.payload\.signature/,
    );
    expect(await call(jwt({ sub: "ann" }, "another-key"))).toEqual({
      status: 401,
      code: "unauthenticated",
      message:
        "invalid token: its signature does not match AUTH_JWT_SECRET: it was signed with another key",
    });
    expect(await call(jwt({ sub: "ann", exp: now - 60 }, secret))).toEqual({
      status: 401,
      code: "unauthenticated",
      message: `invalid token: it expired at ${new Date((now - 60) * 1000).toISOString()}; get a new one`,
    });
    expect(await call(jwt({ sub: "ann", exp: now + 60 }, secret))).toMatchObject({ status: 200 });
  });
});
