// The cases the fuzzer (fuzz-rpc.ts) found answered with `internal`, or with no status at all,
// kept as fixed reproducers: a request body the server cannot decode is InvalidArgument on every
// RPC, protocol and path (Switchboard's handlers, connect-es's own, compressed or not).
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { frame, type RawProtocol, rawCall } from "./raw-call.js";
import { chatClient } from "./support.js";

let server: ServerProcess;
beforeAll(async () => {
  server = await startServer({ store: "memory" });
});
afterAll(async () => {
  await server?.close();
});

const PATHS = [
  { path: "/chat.ChatService/SendMessage", kind: "unary" },
  { path: "/chat.ChatService/GetHistory", kind: "unary" },
  { path: "/grpc.health.v1.Health/Check", kind: "unary" },
  { path: "/chat.ChatService/SubscribeMessages", kind: "server" },
  { path: "/chat.ChatService/StreamMetrics", kind: "server" },
  { path: "/chat.LogService/StreamLogs", kind: "server" },
  { path: "/chat.ChatService/UploadMessages", kind: "client" },
  { path: "/chat.ChatService/Chat", kind: "bidi" },
] as const;

const WIRES: Array<{ name: string; protocol: RawProtocol; http: "1.1" | "2" }> = [
  { name: "gRPC", protocol: "grpc", http: "2" },
  { name: "gRPC-Web", protocol: "grpc-web", http: "2" },
  { name: "Connect", protocol: "connect", http: "2" },
];

/** Headers and body for `data` (a request message's bytes) as the wire sends it. */
function request(
  kind: (typeof PATHS)[number]["kind"],
  protocol: RawProtocol,
  data: Uint8Array,
  options: { json?: boolean; flags?: number; gzip?: boolean } = {},
) {
  const codec = options.json === true ? "json" : "proto";
  const headers: Record<string, string> = {};
  let body: Uint8Array;
  if (protocol === "connect" && kind === "unary") {
    headers["content-type"] = `application/${codec}`;
    if (options.gzip === true) headers["content-encoding"] = "gzip";
    body = data;
  } else {
    if (protocol === "connect") {
      headers["content-type"] = `application/connect+${codec}`;
      if (options.gzip === true) headers["connect-content-encoding"] = "gzip";
    } else {
      headers["content-type"] = `application/${protocol}+${codec}`;
      if (protocol === "grpc") headers.te = "trailers";
      if (options.gzip === true) headers["grpc-encoding"] = "gzip";
    }
    body = frame(data, options.flags ?? (options.gzip === true ? 1 : 0));
  }
  return { headers, body };
}

const BAD = [
  ["malformed protobuf (a field claims 50 bytes, 1 follows)", Buffer.from([0x0a, 50, 0x61]), {}],
  ["protobuf with invalid UTF-8 in a string", Buffer.from([0x0a, 0x02, 0xff, 0xfe]), {}],
  // JSON.parse quotes the bad token as one UTF-16 code unit: half a surrogate pair, which
  // encodeURIComponent (grpc-message) cannot encode.
  ["JSON that is one character outside the BMP", Buffer.from("𐀀"), { json: true }],
  [
    "an envelope flagged compressed without an encoding",
    Buffer.from([0x0a, 0x01, 0x61]),
    { flags: 1 },
  ],
  [
    "gzip-compressed JSON that is one character outside the BMP",
    gzipSync(Buffer.from("𐀀")),
    { json: true, gzip: true },
  ],
  [
    "a gzip body cut short",
    gzipSync(Buffer.from([0x0a, 0x01, 0x61])).subarray(0, 12),
    { gzip: true },
  ],
] as const;

describe.each(BAD)("%s", (_what, data, options) => {
  it.each(WIRES)("is InvalidArgument on every RPC over $name", async (wire) => {
    for (const { path, kind } of PATHS) {
      // Connect unary has no envelope to flag.
      if ("flags" in options && wire.protocol === "connect" && kind === "unary") continue;
      const { headers, body } = request(kind, wire.protocol, data, options);
      const answer = await rawCall(
        server.baseUrl,
        {
          protocol: wire.protocol,
          http: wire.http,
          path,
          headers,
          body,
          streamingResponse: kind !== "unary",
        },
        5_000,
      );
      expect(answer.code, `${path}: ${answer.message}`).toBe("invalid_argument");
      if (wire.protocol === "connect" && kind === "unary") expect(answer.httpStatus).toBe(400);
      expect(answer.message.isWellFormed()).toBe(true);
    }
    await expect(
      chatClient(server.baseUrl).sendMessage({
        room: "undecodable",
        user: "u",
        content: "still serving",
      }),
    ).resolves.toBeDefined();
  });
});
