// Every limit and credential check on every path a request can take: the straight-line unary
// handler, the batched SubscribeMessages writer, connect-es's own handlers (UploadMessages,
// Chat, StreamMetrics, LogService, compressed bodies, Connect GET), over gRPC, gRPC-Web and
// Connect. One server with authentication by a JSON Web Key Set file (AUTH_JWKS_FILE), a small
// publish rate and a small READ_MAX_BYTES.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import {
  ChatService,
  GetHistoryRequestSchema,
  type Message,
  MessageSchema,
  MetricsRequestSchema,
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { LogRequestSchema, LogService } from "@switchboard/proto/gen/chat/log_pb";
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerProcess } from "./harness.js";
import { frame, type RawProtocol, rawCall } from "./raw-call.js";
import { codeName, connectErrorOf, Pushable, StreamReader, uniqueRoom, within } from "./support.js";

const READ_MAX_BYTES = 2048;

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;
let keys: KeyPair;
let otherKeys: KeyPair;
let jwksDir: string;
let server: ServerProcess;

/**
 * An ES256 token for `sub`, signed with the server's key "k1" unless told otherwise, with the
 * admin role, so that every path (StreamMetrics and StreamLogs need it) is open to it: the role
 * itself is roles.test.ts's.
 */
async function mint(
  sub: string,
  options: { kid?: string; key?: KeyPair; expS?: number; nbfS?: number } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ roles: ["admin"] })
    .setProtectedHeader({ alg: "ES256", kid: options.kid ?? "k1" })
    .setSubject(sub)
    .setIssuedAt(now - 600)
    .setExpirationTime(now + (options.expS ?? 300));
  if (options.nbfS !== undefined) jwt.setNotBefore(now + options.nbfS);
  return jwt.sign((options.key ?? keys).privateKey);
}

beforeAll(async () => {
  keys = await generateKeyPair("ES256");
  otherKeys = await generateKeyPair("ES256");
  jwksDir = mkdtempSync(join(tmpdir(), "switchboard-jwks-"));
  const jwk = { ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  writeFileSync(join(jwksDir, "jwks.json"), JSON.stringify({ keys: [jwk] }));
  server = await ServerProcess.start({
    store: "memory",
    env: {
      AUTH_JWKS_FILE: join(jwksDir, "jwks.json"),
      PUBLISH_RATE: "1",
      PUBLISH_BURST: "3",
      READ_MAX_BYTES: String(READ_MAX_BYTES),
      MAX_CONTENT_BYTES: "65536",
    },
  });
});

afterAll(async () => {
  await server?.close();
  if (jwksDir !== undefined) rmSync(jwksDir, { recursive: true, force: true });
});

const CLIENTS = [
  { name: "connect h2", protocol: "connect", httpVersion: "2", useBinaryFormat: false },
  { name: "connect h1.1", protocol: "connect", httpVersion: "1.1", useBinaryFormat: true },
  { name: "grpc", protocol: "grpc", httpVersion: "2", useBinaryFormat: true },
  { name: "grpc-web h2", protocol: "grpcweb", httpVersion: "2", useBinaryFormat: true },
  { name: "grpc-web h1.1", protocol: "grpcweb", httpVersion: "1.1", useBinaryFormat: true },
] as const;
type ClientCase = (typeof CLIENTS)[number];
/** Chat is bidirectional: both directions stream at once, which needs HTTP/2. */
const BIDI_CLIENTS = CLIENTS.filter((c) => c.httpVersion === "2");

function transport(cc: ClientCase, token: string | undefined) {
  return createNodeTransport({
    baseUrl: server.baseUrl,
    protocol: cc.protocol,
    httpVersion: cc.httpVersion,
    useBinaryFormat: cc.useBinaryFormat,
    ...(token === undefined ? {} : { token }),
  });
}
const chat = (cc: ClientCase, token?: string): Client<typeof ChatService> =>
  createClient(ChatService, transport(cc, token));
const logs = (cc: ClientCase, token?: string): Client<typeof LogService> =>
  createClient(LogService, transport(cc, token));

async function* messages(
  room: string,
  n: number,
): AsyncIterable<MessageInitShape<typeof MessageSchema>> {
  for (let i = 0; i < n; i++) yield { room, user: "u", content: `m${i}` };
}

describe("the publish rate on streams (PUBLISH_RATE=1, PUBLISH_BURST=3)", () => {
  it.each(CLIENTS)(
    "UploadMessages over $name: the 4th message is ResourceExhausted, 3 stay stored",
    async (cc) => {
      const room = uniqueRoom("rate-upload");
      const client = chat(cc, await mint(`uploader-${cc.name}`));
      const err = await connectErrorOf(client.uploadMessages(messages(room, 4)));
      expect(codeName(err.code)).toBe("ResourceExhausted");
      expect(err.rawMessage).toMatch(/publish rate exceeded \(1\/s\); retry in \d+ ms/);
      expect(err.metadata.get("retry-after-ms")).toMatch(/^\d+$/);
      const history = await chat(cc, await mint(`reader-${cc.name}`)).getHistory({ room });
      expect(history.messages.map((m) => m.content)).toEqual(["m0", "m1", "m2"]);
    },
  );

  it.each(BIDI_CLIENTS)(
    "Chat over $name: 3 echoes, then the session ends with ResourceExhausted",
    async (cc) => {
      const room = uniqueRoom("rate-chat");
      const client = chat(cc, await mint(`chatter-${cc.name}`));
      const requests = new Pushable<MessageInitShape<typeof MessageSchema>>();
      const reader = new StreamReader<Message>((signal) => client.chat(requests, { signal }));
      for (let i = 0; i < 4; i++) requests.push({ room, user: "u", content: `c${i}` });
      const err = await within(reader.ended, 10_000, "the Chat session's end");
      requests.end();
      expect(err === undefined ? "clean end" : codeName(err.code)).toBe("ResourceExhausted");
      expect(err?.rawMessage).toMatch(/publish rate exceeded/);
      const echoes = reader.received.filter((m) => m.content.startsWith("Echo: "));
      expect(echoes.map((m) => m.content)).toEqual(["Echo: c0", "Echo: c1", "Echo: c2"]);
    },
  );

  it("SendMessage after a stream used the bucket up: ResourceExhausted too (one bucket per identity)", async () => {
    const room = uniqueRoom("rate-shared");
    const token = await mint("shared-bucket");
    const client = chat(CLIENTS[2], token);
    await expect(client.uploadMessages(messages(room, 3))).resolves.toMatchObject({
      messageCount: 3,
    });
    const err = await connectErrorOf(client.sendMessage({ room, user: "u", content: "one more" }));
    expect(codeName(err.code)).toBe("ResourceExhausted");
  });
});

/** A protobuf field 15 (length-delimited, unknown to every request) of `n` bytes. */
function unknownField(n: number): Buffer {
  const varint: number[] = [];
  for (let v = n; ; v >>>= 7) {
    if (v < 0x80) {
      varint.push(v);
      break;
    }
    varint.push((v & 0x7f) | 0x80);
  }
  return Buffer.concat([Buffer.from([(15 << 3) | 2, ...varint]), Buffer.alloc(n, 0x61)]);
}

/** Each RPC with a valid request message. */
const RPCS: Array<{
  path: string;
  kind: "unary" | "server" | "client" | "bidi";
  schema: DescMessage;
  init: Record<string, unknown>;
}> = [
  {
    path: "/chat.ChatService/SendMessage",
    kind: "unary",
    schema: SendMessageRequestSchema,
    init: { room: "big", user: "u", content: "x" },
  },
  {
    path: "/chat.ChatService/GetHistory",
    kind: "unary",
    schema: GetHistoryRequestSchema,
    init: { room: "big" },
  },
  {
    path: "/chat.ChatService/SubscribeMessages",
    kind: "server",
    schema: SubscribeRequestSchema,
    init: { room: "big", user: "u" },
  },
  {
    path: "/chat.ChatService/StreamMetrics",
    kind: "server",
    schema: MetricsRequestSchema,
    init: { intervalSeconds: 1 },
  },
  {
    path: "/chat.LogService/StreamLogs",
    kind: "server",
    schema: LogRequestSchema,
    init: { backlog: 1 },
  },
  {
    path: "/chat.ChatService/UploadMessages",
    kind: "client",
    schema: MessageSchema,
    init: { room: "big", user: "u", content: "x" },
  },
  {
    path: "/chat.ChatService/Chat",
    kind: "bidi",
    schema: MessageSchema,
    init: { room: "big", user: "u", content: "x" },
  },
];

/** Every way a body can reach a handler: protocol, HTTP version, codec, compression. */
const WIRES: Array<{
  name: string;
  protocol: RawProtocol;
  http: "1.1" | "2";
  json: boolean;
  gzip: boolean;
}> = [
  { name: "grpc", protocol: "grpc", http: "2", json: false, gzip: false },
  { name: "grpc gzip", protocol: "grpc", http: "2", json: false, gzip: true },
  { name: "grpc-web h1.1", protocol: "grpc-web", http: "1.1", json: false, gzip: false },
  { name: "grpc-web h2", protocol: "grpc-web", http: "2", json: false, gzip: false },
  { name: "connect h1.1 proto", protocol: "connect", http: "1.1", json: false, gzip: false },
  { name: "connect h2 proto", protocol: "connect", http: "2", json: false, gzip: false },
  { name: "connect h1.1 json", protocol: "connect", http: "1.1", json: true, gzip: false },
  { name: "connect h1.1 json gzip", protocol: "connect", http: "1.1", json: true, gzip: true },
];

/** A request body of one message over READ_MAX_BYTES (padding a valid message), and its headers. */
function oversized(
  rpc: (typeof RPCS)[number],
  wire: (typeof WIRES)[number],
  token: string,
): { headers: Record<string, string>; body: Buffer } {
  const padding = READ_MAX_BYTES * 2;
  const data = wire.json
    ? Buffer.from(`${JSON.stringify(rpc.init)}${" ".repeat(padding)}`)
    : Buffer.concat([
        Buffer.from(toBinary(rpc.schema, create(rpc.schema, rpc.init))),
        unknownField(padding),
      ]);
  const payload = wire.gzip ? gzipSync(data) : data;
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  const codec = wire.json ? "json" : "proto";
  let body: Buffer;
  if (wire.protocol === "connect" && rpc.kind === "unary") {
    headers["content-type"] = `application/${codec}`;
    if (wire.gzip) headers["content-encoding"] = "gzip";
    body = payload;
  } else if (wire.protocol === "connect") {
    headers["content-type"] = `application/connect+${codec}`;
    if (wire.gzip) headers["connect-content-encoding"] = "gzip";
    body = frame(payload, wire.gzip ? 1 : 0);
  } else {
    headers["content-type"] =
      wire.protocol === "grpc" ? "application/grpc" : "application/grpc-web+proto";
    if (wire.protocol === "grpc") headers.te = "trailers";
    if (wire.gzip) headers["grpc-encoding"] = "gzip";
    body = frame(payload, wire.gzip ? 1 : 0);
  }
  return { headers, body };
}

describe(`READ_MAX_BYTES (${READ_MAX_BYTES}) on every RPC and path`, () => {
  const cases = RPCS.flatMap((rpc) =>
    WIRES.filter(
      // Bidi needs HTTP/2 (over HTTP/1.1 Connect answers 505 before reading the body).
      (w) => !(rpc.kind === "bidi" && w.http === "1.1") && !(w.json && w.protocol !== "connect"),
    ).map((wire) => ({ name: `${rpc.path.split("/")[2]} over ${wire.name}`, rpc, wire })),
  );

  it.each(cases)("$name: ResourceExhausted", async ({ name, rpc, wire }) => {
    // An identity of its own: the publish rate must not be what refuses it.
    const { headers, body } = oversized(rpc, wire, await mint(`big-${name}`));
    const answer = await rawCall(
      server.baseUrl,
      {
        protocol: wire.protocol,
        http: wire.http,
        path: rpc.path,
        headers,
        body,
        streamingResponse: rpc.kind !== "unary",
      },
      5_000,
    );
    expect(answer.code, answer.message).toBe("resource_exhausted");
    expect(answer.message).toMatch(/readMaxBytes/);
    if (wire.protocol === "connect" && rpc.kind === "unary") expect(answer.httpStatus).toBe(429);
  });

  it("the same messages without the padding pass the size check", async () => {
    const token = await mint("small-sender");
    for (const rpc of RPCS.filter((r) => r.kind === "unary" || r.kind === "client")) {
      const answer = await rawCall(server.baseUrl, {
        protocol: "grpc",
        http: "2",
        path: rpc.path,
        headers: {
          "content-type": "application/grpc",
          te: "trailers",
          authorization: `Bearer ${token}`,
        },
        body: frame(toBinary(rpc.schema, create(rpc.schema, rpc.init))),
        streamingResponse: rpc.kind !== "unary",
      });
      expect(answer.code, `${rpc.path}: ${answer.message}`).toBe("ok");
    }
  });
});

describe("tokens verified with the JWKS file (AUTH_JWKS_FILE), on every path", () => {
  const BAD_TOKENS: Array<[string, () => Promise<string>]> = [
    ["an expired token", () => mint("eve", { expS: -60 })],
    ["a token not yet valid (nbf in 5 min)", () => mint("eve", { nbfS: 300 })],
    ["a token naming a key not in the set (kid k2)", () => mint("eve", { kid: "k2" })],
    ["a forged signature (another key, kid k1)", () => mint("eve", { key: otherKeys })],
    [
      "an unsigned token (alg none)",
      async () => new UnsecuredJWT({ sub: "eve" }).setExpirationTime("5m").encode(),
    ],
    [
      "an HS256 token (no shared secret is configured)",
      () =>
        new SignJWT({})
          .setProtectedHeader({ alg: "HS256", kid: "k1" })
          .setSubject("eve")
          .setExpirationTime("5m")
          .sign(new TextEncoder().encode("guessed-secret-0123456789abcdef")),
    ],
    [
      "a token whose signature was cut off",
      async () => (await mint("eve")).replace(/\.[^.]+$/, "."),
    ],
  ];

  /** Each path a call can take, as a call that resolves when it succeeds. */
  const PATHS: Array<[string, (cc: ClientCase, token: string) => Promise<unknown>]> = [
    [
      "SendMessage",
      (cc, t) => chat(cc, t).sendMessage({ room: uniqueRoom("jwks"), user: "u", content: "hi" }),
    ],
    ["GetHistory", (cc, t) => chat(cc, t).getHistory({ room: "jwks" })],
    [
      "SubscribeMessages",
      async (cc, t) => {
        for await (const _ of chat(cc, t).subscribeMessages({
          room: uniqueRoom("jwks"),
          user: "u",
        }))
          return;
      },
    ],
    ["UploadMessages", (cc, t) => chat(cc, t).uploadMessages(messages(uniqueRoom("jwks"), 1))],
    [
      "StreamLogs",
      async (cc, t) => {
        for await (const _ of logs(cc, t).streamLogs({ backlog: 1 })) return;
      },
    ],
  ];

  it.each(CLIENTS)("a valid ES256 token is accepted on every path over $name", async (cc) => {
    const token = await mint(`valid-${cc.name}`);
    for (const [name, call] of PATHS) await expect(call(cc, token), name).resolves.not.toThrow();
  });

  it.each(BAD_TOKENS)("%s: Unauthenticated on every path and protocol", async (_what, make) => {
    const token = await make();
    for (const cc of CLIENTS) {
      for (const [name, call] of PATHS) {
        const err = await connectErrorOf(call(cc, token));
        expect(codeName(err.code), `${name} over ${cc.name}`).toBe("Unauthenticated");
      }
      if (cc.httpVersion === "2") {
        const requests = new Pushable<MessageInitShape<typeof MessageSchema>>();
        const reader = new StreamReader<Message>((signal) =>
          chat(cc, token).chat(requests, { signal }),
        );
        requests.push({ room: uniqueRoom("jwks"), user: "u", content: "hi" });
        const err = await within(reader.ended, 5_000, "Chat's end");
        requests.end();
        expect(err === undefined ? "clean end" : codeName(err.code), `Chat over ${cc.name}`).toBe(
          "Unauthenticated",
        );
        expect(reader.received.filter((m) => m.content.startsWith("Echo"))).toEqual([]);
      }
    }
  });

  it("an expired token is refused over a Connect GET too (HTTP 401)", async () => {
    const message = encodeURIComponent(JSON.stringify({ room: "jwks" }));
    const res = await fetch(
      `${server.baseUrl}/chat.ChatService/GetHistory?encoding=json&message=${message}`,
      { headers: { authorization: `Bearer ${await mint("eve", { expS: -60 })}` } },
    );
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({
      code: "unauthenticated",
      message: "invalid token: expired",
    });
  });
});
