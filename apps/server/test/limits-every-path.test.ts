// Every limit and credential check on every path a request can take: the straight-line unary
// handler, the batched SubscribeMessages writer, connect-es's own handlers (UploadMessages,
// Chat, StreamMetrics, LogService, compressed bodies, Connect GET), over gRPC, gRPC-Web and
// Connect. One server with authentication by a JSON Web Key Set file (AUTH_JWKS_FILE), a small
// publish rate and a small READ_MAX_BYTES. The RPCs are every method of the policy table
// (every-rpc.ts), so a new one is checked here without an edit: the publish rate on each that
// publishes, READ_MAX_BYTES on each, the token on each that is not open.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type MessageSchema, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EVERY_RPC, type EveryRpc } from "./every-rpc.js";
import { ServerProcess } from "./harness.js";
import { frame, type RawProtocol, rawCall } from "./raw-call.js";
import {
  type ConnectError,
  codeName,
  connectErrorOf,
  Pushable,
  StreamReader,
  uniqueRoom,
  within,
} from "./support.js";

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
/** The clients that can make a call of `rpc`: bidi needs HTTP/2 (both directions stream at once). */
const clientsFor = (rpc: EveryRpc) =>
  CLIENTS.filter((c) => rpc.kind !== "bidi" || c.httpVersion === "2");

/**
 * One transport per client case, shared by every call (the token goes in each call's headers):
 * a connection per call would soon be over the server's per-address connection cap.
 */
const transports = new Map<ClientCase, Transport>();
function transport(cc: ClientCase): Transport {
  let t = transports.get(cc);
  if (t === undefined) {
    t = createNodeTransport({
      baseUrl: server.baseUrl,
      protocol: cc.protocol,
      httpVersion: cc.httpVersion,
      useBinaryFormat: cc.useBinaryFormat,
    });
    transports.set(cc, t);
  }
  return t;
}
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const chat = (cc: ClientCase): Client<typeof ChatService> =>
  createClient(ChatService, transport(cc));

/** A method of a generated client, called without its types (the method comes from the table). */
type AnyMethod = (
  request: unknown,
  options: { signal: AbortSignal; headers: Record<string, string> },
) => unknown;
/** `rpc`'s method on a client over `cc`. */
function methodOf(rpc: EveryRpc, cc: ClientCase): AnyMethod {
  const client = createClient(rpc.policy.method.parent, transport(cc)) as unknown as Record<
    string,
    AnyMethod
  >;
  return client[rpc.policy.method.localName] as AnyMethod;
}

/**
 * One call of `rpc` over `cc` with `token`, sending `requests` (one for a unary or server-stream
 * call). Resolves once the call succeeded: the unary answer, or a streaming call's first
 * response message (then it is cancelled), or its clean end.
 * @throws the call's error (ConnectError).
 */
async function callOnce(
  rpc: EveryRpc,
  cc: ClientCase,
  token: string,
  requests: ReadonlyArray<MessageInitShape<typeof rpc.schema>> = [rpc.init],
): Promise<void> {
  const method = methodOf(rpc, cc);
  const controller = new AbortController();
  const options = { signal: controller.signal, headers: bearer(token) };
  const stream = async function* () {
    yield* requests;
    // A bidi call keeps its request side open until the first answer (Chat ends otherwise).
    if (rpc.kind === "bidi")
      await new Promise((r) => controller.signal.addEventListener("abort", r));
  };
  try {
    switch (rpc.kind) {
      case "unary":
        await within(
          method(requests[0], options) as Promise<unknown>,
          5_000,
          `${rpc.name}'s answer`,
        );
        return;
      case "client":
        await within(method(stream(), options) as Promise<unknown>, 5_000, `${rpc.name}'s answer`);
        return;
      case "server":
      case "bidi": {
        const responses = method(
          rpc.kind === "server" ? requests[0] : stream(),
          options,
        ) as AsyncIterable<unknown>;
        const first = (async () => {
          for await (const _ of responses) return;
        })();
        await within(first, 5_000, `${rpc.name}'s first response or its end`);
        return;
      }
    }
  } finally {
    controller.abort();
  }
}

/** The RPCs whose request messages each publish a chat message (the policy's `publishes`). */
const PUBLISHING = EVERY_RPC.filter((rpc) => rpc.policy.publishes);

describe("the publish rate on every RPC that publishes (PUBLISH_RATE=1, PUBLISH_BURST=3)", () => {
  it("finds the publishing RPCs in the policy table", () => {
    expect(PUBLISHING.map((rpc) => rpc.name)).toEqual(
      expect.arrayContaining([
        "chat.ChatService/SendMessage",
        "chat.ChatService/UploadMessages",
        "chat.ChatService/Chat",
      ]),
    );
  });

  const cases = PUBLISHING.flatMap((rpc) =>
    clientsFor(rpc).map((cc) => ({ name: `${rpc.name} over ${cc.name}`, rpc, cc })),
  );
  it.each(cases)(
    "$name: the 4th message is ResourceExhausted with the wait, 3 stay stored",
    async ({ name, rpc, cc }) => {
      const room = uniqueRoom("rate");
      const token = await mint(`publisher-${name}`);
      const messages = [0, 1, 2, 3].map((i) => ({ ...rpc.init, room, content: `m${i}` }));
      let err: ConnectError;
      if (rpc.kind === "unary") {
        // Three calls pass; the fourth is refused.
        for (const message of messages.slice(0, 3)) await callOnce(rpc, cc, token, [message]);
        err = await connectErrorOf(callOnce(rpc, cc, token, messages.slice(3)));
      } else if (rpc.kind === "bidi") {
        // A session's answers arrive while it sends: read until it ends.
        const requests = new Pushable<unknown>();
        const method = methodOf(rpc, cc);
        const reader = new StreamReader<unknown>(
          (signal) =>
            method(requests, { signal, headers: bearer(token) }) as AsyncIterable<unknown>,
        );
        for (const message of messages) requests.push(message);
        const ended = await within(reader.ended, 10_000, `the end of ${name}`);
        requests.end();
        expect(ended, "a clean end").toBeDefined();
        err = ended as ConnectError;
      } else {
        err = await connectErrorOf(callOnce(rpc, cc, token, messages));
      }
      expect(codeName(err.code)).toBe("ResourceExhausted");
      expect(err.rawMessage).toMatch(
        /publish rate exceeded \(PUBLISH_RATE 1\/s\); retry in \d+ ms/,
      );
      if (rpc.kind !== "bidi") expect(err.metadata.get("retry-after-ms")).toMatch(/^\d+$/);
      const history = await chat(cc).getHistory(
        { room },
        { headers: bearer(await mint(`reader-${name}`)) },
      );
      // The chat messages (a Chat session also stores its user's JOIN).
      const chats = history.messages.filter((m) => m.type === MessageType.CHAT);
      expect(chats.map((m) => m.content)).toEqual(["m0", "m1", "m2"]);
    },
  );

  it("SendMessage after a stream used the bucket up: ResourceExhausted too (one bucket per identity)", async () => {
    const room = uniqueRoom("rate-shared");
    const token = await mint("shared-bucket");
    const client = chat(CLIENTS[2]);
    const headers = bearer(token);
    await expect(client.uploadMessages(messages(room, 3), { headers })).resolves.toMatchObject({
      messageCount: 3,
    });
    const err = await connectErrorOf(
      client.sendMessage({ room, user: "u", content: "one more" }, { headers }),
    );
    expect(codeName(err.code)).toBe("ResourceExhausted");
  });
});

async function* messages(
  room: string,
  n: number,
): AsyncIterable<MessageInitShape<typeof MessageSchema>> {
  for (let i = 0; i < n; i++) yield { room, user: "u", content: `m${i}` };
}

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
  rpc: EveryRpc,
  wire: (typeof WIRES)[number],
  token: string,
): { headers: Record<string, string>; body: Buffer } {
  const padding = READ_MAX_BYTES * 2;
  const data = wire.json
    ? Buffer.from(`${rpc.json()}${" ".repeat(padding)}`)
    : Buffer.concat([Buffer.from(rpc.binary()), unknownField(padding)]);
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
  const cases = EVERY_RPC.flatMap((rpc) =>
    WIRES.filter(
      // Bidi needs HTTP/2 (over HTTP/1.1 Connect answers 505 before reading the body).
      (w) => !(rpc.kind === "bidi" && w.http === "1.1") && !(w.json && w.protocol !== "connect"),
    ).map((wire) => ({ name: `${rpc.name} over ${wire.name}`, rpc, wire })),
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
    // The setting a user sets, never connect-es's option name.
    expect(answer.message).toMatch(new RegExp(`over READ_MAX_BYTES \\(${READ_MAX_BYTES}\\)$`));
    expect(answer.message).not.toMatch(/readMaxBytes/);
    if (wire.protocol === "connect" && rpc.kind === "unary") expect(answer.httpStatus).toBe(429);
  });

  it("the same messages without the padding pass the size check", async () => {
    const token = await mint("small-sender");
    for (const rpc of EVERY_RPC.filter((r) => r.kind === "unary" || r.kind === "client")) {
      const answer = await rawCall(server.baseUrl, {
        protocol: "grpc",
        http: "2",
        path: rpc.path,
        headers: {
          "content-type": "application/grpc",
          te: "trailers",
          authorization: `Bearer ${token}`,
        },
        body: frame(rpc.binary()),
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

  /** Every RPC that needs a token (all but the open ones: health checking, reflection). */
  const SECURED = EVERY_RPC.filter((rpc) => !rpc.policy.open);

  it("finds the RPCs that need a token in the policy table, WatchRooms among them", () => {
    expect(SECURED.map((rpc) => rpc.name)).toContain("chat.ChatService/WatchRooms");
    expect(SECURED.map((rpc) => rpc.name)).toContain("chat.LogService/StreamLogs");
  });

  it.each(CLIENTS)("a valid ES256 token is accepted on every path over $name", async (cc) => {
    for (const rpc of SECURED.filter((r) => clientsFor(r).includes(cc))) {
      // An identity per call: the publish rate must not be what refuses it.
      const token = await mint(`valid-${cc.name}-${rpc.name}`);
      await expect(callOnce(rpc, cc, token), rpc.name).resolves.toBeUndefined();
    }
  });

  it.each(BAD_TOKENS)("%s: Unauthenticated on every path and protocol", async (_what, make) => {
    const token = await make();
    for (const cc of CLIENTS) {
      for (const rpc of SECURED.filter((r) => clientsFor(r).includes(cc))) {
        // A streaming call that answered anything would have resolved: nothing was sent.
        const err = await connectErrorOf(callOnce(rpc, cc, token));
        expect(codeName(err.code), `${rpc.name} over ${cc.name}: ${err.message}`).toBe(
          "Unauthenticated",
        );
      }
    }
  });

  it("an expired token is refused over a Connect GET too (HTTP 401)", async () => {
    const message = encodeURIComponent(JSON.stringify({ room: "jwks" }));
    const res = await fetch(
      `${server.baseUrl}/chat.ChatService/GetHistory?encoding=json&message=${message}`,
      { headers: { authorization: `Bearer ${await mint("eve", { expS: -60 })}` } },
    );
    expect(res.status, await res.clone().text()).toBe(401);
    expect(await res.json()).toMatchObject({
      code: "unauthenticated",
      message: expect.stringMatching(/^invalid token: it expired at \S+Z; get a new one$/),
    });
  });
});
