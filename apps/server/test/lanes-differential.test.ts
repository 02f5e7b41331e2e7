// The differential test of the two lanes (ARCHITECTURE.md, "The lean lane"): the same requests
// to two servers with the same settings, one with LEAN_LANE=on (Switchboard's own handlers serve
// the hot RPCs), one with LEAN_LANE=off (connect-es's handlers serve every call: the reference
// lane), must get the same answers: HTTP status, response headers, trailers, and body (proto
// bytes, or parsed JSON), volatile values (dates, ids, timestamps, epochs, durations) set aside.
// Every RPC of the policy table (every-rpc.ts) × protocol × codec × HTTP version, and the
// refusals: bad content type, too large, bad or too long deadline, no or bad token, over the
// publish rate and the stream cap, invalid argument, undecodable body, unknown method, shutdown.
//
// The requests are made by hand (node:http, node:http2, envelopes built here), so no client of
// ours or of connect-es reads or normalises the answers. Each case goes to both servers at once,
// and the cases run one after the other: both servers see the same sequence, in rooms of their
// own per case, so offsets and room lists match.
import http from "node:http";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  toBinary,
  toJson,
  toJsonString,
} from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EVERY_RPC, type EveryRpc } from "./every-rpc.js";
import { ServerProcess } from "./harness.js";
import { envelopes, frame } from "./raw-call.js";
import { within } from "./support.js";

const SECRET = "lanes-differential-secret-0123456789";
const READ_MAX_BYTES = 2048;
/** The deadline a streaming call is sent with: it ends the stream, the same way on both lanes. */
const STREAM_DEADLINE_MS = 250;

/** The origin every request comes from: the CORS headers are compared too. */
const ORIGIN = "https://app.example.com";

/** Settings of both servers of a pair; only LEAN_LANE differs. */
const COMMON = {
  CORS_ORIGINS: ORIGIN,
  INSTANCE_ID: "lanes",
  READ_MAX_BYTES: String(READ_MAX_BYTES),
  MAX_TIMEOUT_MS: "60000",
  // No LEAVE and no heartbeat in the middle of the run (they would land at different moments).
  PRESENCE_GRACE_MS: "3600000",
  CHAT_HEARTBEAT_S: "3600",
};
/** The second pair: authentication on, one message per identity, one stream per identity. */
const AUTH = {
  ...COMMON,
  AUTH_JWT_SECRET: SECRET,
  PUBLISH_RATE: "1",
  PUBLISH_BURST: "1",
  MAX_STREAMS_PER_IDENTITY: "1",
};

interface Pair {
  lean: ServerProcess;
  reference: ServerProcess;
}
let plain: Pair;
let auth: Pair;

async function startPair(env: Record<string, string>): Promise<Pair> {
  const [lean, reference] = await Promise.all([
    ServerProcess.start({ store: "memory", env: { ...env, LEAN_LANE: "on" } }),
    ServerProcess.start({ store: "memory", env: { ...env, LEAN_LANE: "off" } }),
  ]);
  return { lean, reference };
}

beforeAll(async () => {
  [plain, auth] = await Promise.all([startPair(COMMON), startPair(AUTH)]);
});

afterAll(async () => {
  for (const session of sessions.values()) session.close();
  await Promise.all(
    [plain?.lean, plain?.reference, auth?.lean, auth?.reference].map((s) => s?.close()),
  );
});

// --- The raw client ---------------------------------------------------------------------------

type Protocol = "grpc" | "grpc-web" | "connect";
type HttpVersion = "1.1" | "2";

/** One request as sent. */
interface RawRequest {
  http: HttpVersion;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array;
  /** Keep the request side open until the answer ends (a bidi call that is not done sending). */
  holdOpen?: boolean;
  /** Resolve once the response head arrived (the call stays open), for the shutdown case. */
  untilHead?: boolean;
}

/** One answer as received. */
interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  trailers: http.IncomingHttpHeaders;
  body: Buffer;
  /** How the exchange ended when not with a complete response (a reset, a socket error). */
  failure?: string;
}

const sessions = new Map<string, http2.ClientHttp2Session>();

/** One h2c session per server, shared by its calls. */
function sessionOf(baseUrl: string): http2.ClientHttp2Session {
  let session = sessions.get(baseUrl);
  if (session === undefined || session.closed || session.destroyed) {
    session = http2.connect(baseUrl);
    session.on("error", () => {});
    sessions.set(baseUrl, session);
  }
  return session;
}

/** An answer still being read: `head` resolves at the response head, `done` at the end. */
interface Exchange {
  head: Promise<void>;
  done: Promise<RawAnswer>;
  /** The client goes away (RST_STREAM CANCEL, or the connection closed). */
  cancel(): void;
}

function exchange(baseUrl: string, req: RawRequest): Exchange {
  return req.http === "2" ? h2(baseUrl, req) : h1(baseUrl, req);
}

function h2(baseUrl: string, req: RawRequest): Exchange {
  const stream = sessionOf(baseUrl).request({
    ":method": "POST",
    ":path": req.path,
    ...req.headers,
  });
  let headers: http2.IncomingHttpHeaders = {};
  let trailers: http2.IncomingHttpHeaders = {};
  const chunks: Buffer[] = [];
  const head = new Promise<void>((resolve) => stream.once("response", () => resolve()));
  stream.on("response", (h) => {
    headers = h;
  });
  stream.on("trailers", (t) => {
    trailers = t;
  });
  stream.on("data", (c: Buffer) => chunks.push(c));
  let failure: string | undefined;
  stream.on("error", (err: Error) => {
    failure = err.message;
  });
  const done = new Promise<RawAnswer>((resolve) => {
    stream.on("close", () => {
      const status = Number(headers[":status"] ?? 0);
      const { ":status": _, ...rest } = headers;
      if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
        failure ??= `RST_STREAM ${stream.rstCode}`;
      }
      resolve({
        status,
        headers: rest,
        trailers,
        body: Buffer.concat(chunks),
        ...(failure === undefined ? {} : { failure }),
      });
    });
  });
  if (req.holdOpen === true) {
    stream.write(Buffer.from(req.body));
    // The request side ends after the answer, as a client that is not done sending does.
    void done.then(() => stream.end());
  } else {
    stream.end(Buffer.from(req.body));
  }
  return { head, done, cancel: () => stream.close(http2.constants.NGHTTP2_CANCEL) };
}

function h1(baseUrl: string, req: RawRequest): Exchange {
  const request = http.request(`${baseUrl}${req.path}`, {
    method: "POST",
    headers: req.headers,
    agent: false,
  });
  let resolveHead: () => void = () => {};
  const head = new Promise<void>((resolve) => {
    resolveHead = resolve;
  });
  const done = new Promise<RawAnswer>((resolve) => {
    let failure: string | undefined;
    let answer: RawAnswer | undefined;
    request.on("error", (err) => {
      failure = err.message;
    });
    request.on("close", () => {
      resolve(
        answer ?? {
          status: 0,
          headers: {},
          trailers: {},
          body: Buffer.alloc(0),
          failure: failure ?? "closed without an answer",
        },
      );
    });
    request.on("response", (res) => {
      resolveHead();
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (err) => {
        failure = err.message;
      });
      res.on("close", () => {
        answer = {
          status: res.statusCode ?? 0,
          headers: res.headers,
          trailers: res.trailers,
          body: Buffer.concat(chunks),
          ...(failure === undefined && res.complete ? {} : { failure: failure ?? "incomplete" }),
        };
        resolve(answer);
      });
    });
  });
  request.end(Buffer.from(req.body));
  return { head, done, cancel: () => request.destroy() };
}

// --- Building requests ------------------------------------------------------------------------

/** How a request is sent: protocol, codec, HTTP version. */
interface Wire {
  protocol: Protocol;
  binary: boolean;
  http: HttpVersion;
}

const WIRES: readonly Wire[] = [
  { protocol: "grpc", binary: true, http: "2" },
  { protocol: "grpc", binary: false, http: "2" },
  ...(["grpc-web", "connect"] as const).flatMap((protocol) =>
    (["1.1", "2"] as const).flatMap((version) =>
      [true, false].map((binary) => ({ protocol, binary, http: version })),
    ),
  ),
];

const wireName = (w: Wire) => `${w.protocol} ${w.binary ? "proto" : "json"} h${w.http}`;

/** Whether a call of `kind` can be made over `wire` (bidi needs HTTP/2 to stream both ways). */
const allows = (rpc: EveryRpc, wire: Wire) => rpc.kind !== "bidi" || wire.http === "2";

/** A request message in the wire's codec. */
function encode(schema: DescMessage, init: MessageInitShape<DescMessage>, binary: boolean) {
  const message = create(schema, init);
  return binary
    ? toBinary(schema, message)
    : new TextEncoder().encode(toJsonString(schema, message));
}

interface CallSpec {
  rpc: EveryRpc;
  wire: Wire;
  /** The request messages (encoded in the wire's codec), or a raw body as it is. */
  messages?: Uint8Array[];
  rawBody?: Uint8Array;
  /** Headers added to (or replacing) the protocol's own. */
  headers?: Record<string, string | undefined>;
  path?: string;
  /** The request id both servers are sent (the server echoes it as x-request-id). */
  requestId: string;
}

const streamsResponse = (rpc: EveryRpc) => rpc.kind === "server" || rpc.kind === "bidi";

/** The raw request of a call: the protocol's headers and envelopes. */
function requestOf(spec: CallSpec): RawRequest {
  const { rpc, wire } = spec;
  const codec = wire.binary ? "proto" : "json";
  const unary = rpc.kind === "unary";
  const headers: Record<string, string> = { "x-request-id": spec.requestId, origin: ORIGIN };
  const timeout = streamsResponse(rpc) ? STREAM_DEADLINE_MS : undefined;
  switch (wire.protocol) {
    case "grpc":
      headers["content-type"] = `application/grpc+${codec}`;
      headers.te = "trailers";
      if (timeout !== undefined) headers["grpc-timeout"] = `${timeout}m`;
      break;
    case "grpc-web":
      headers["content-type"] = `application/grpc-web+${codec}`;
      headers["x-grpc-web"] = "1";
      if (timeout !== undefined) headers["grpc-timeout"] = `${timeout}m`;
      break;
    case "connect":
      headers["content-type"] = unary ? `application/${codec}` : `application/connect+${codec}`;
      headers["connect-protocol-version"] = "1";
      if (timeout !== undefined) headers["connect-timeout-ms"] = String(timeout);
      break;
  }
  for (const [key, value] of Object.entries(spec.headers ?? {})) {
    if (value === undefined) delete headers[key];
    else headers[key] = value;
  }
  const messages = spec.messages ?? [];
  const body =
    spec.rawBody ??
    (wire.protocol === "connect" && unary
      ? (messages[0] ?? new Uint8Array())
      : Buffer.concat(messages.map((m) => frame(m))));
  return {
    http: wire.http,
    path: spec.path ?? rpc.path,
    headers,
    body,
    holdOpen: holdsOpen(rpc),
  };
}

/**
 * Whether a call of `rpc` keeps its request side open (until its deadline ends it): a Chat
 * client is not done sending while it reads. A reflection client half-closes after its
 * questions (the server answers and ends), as grpcurl does.
 */
const holdsOpen = (rpc: EveryRpc) => rpc.kind === "bidi" && !isReflection(rpc);
const isReflection = (rpc: EveryRpc) =>
  rpc.policy.method.parent.typeName.startsWith("grpc.reflection.");

/** `rpc`'s valid request, in room `room` when it names one. */
function validInit(rpc: EveryRpc, room: string): MessageInitShape<DescMessage> {
  const hasRoom = rpc.schema.fields.some((f) => f.localName === "room");
  return hasRoom ? { ...rpc.init, room } : rpc.init;
}

// --- Comparing answers ------------------------------------------------------------------------

/** Fields whose values differ between two servers by nature: ids, clocks, epochs, durations. */
const VOLATILE_KEYS = new Set([
  "id",
  "messageId",
  "message_id",
  "timestamp",
  "joinedAt",
  "joined_at",
  "time",
  "epoch",
  "pid",
  "hostname",
  "responseTime",
  "durationMs",
  "ms",
  "value",
  "peer",
  "retry-after-ms",
]);

/** A string with its volatile parts set aside (a publish rate's wait). */
const scrubText = (text: string) => text.replace(/retry in \d+ ms/, "retry in <volatile> ms");

function scrub(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(scrub);
  if (typeof value === "string") return scrubText(value);
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[key];
    out[key] = VOLATILE_KEYS.has(key) ? "<volatile>" : scrub(v);
  }
  return out;
}

/** A header or trailer block, volatile values set aside, sorted. */
function fields(block: http.IncomingHttpHeaders, bodyLength: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(block).sort()) {
    if (key === "date") continue;
    let value: unknown = block[key];
    if (key === "content-length") {
      value = Number(value) === bodyLength ? "<the body's length>" : value;
    }
    if (key === "grpc-message" && typeof value === "string") value = decodeURIComponent(value);
    value = VOLATILE_KEYS.has(key) ? "<volatile>" : scrub(value);
    out[key] = value;
  }
  return out;
}

/** A gRPC-Web trailer envelope's fields. */
function grpcWebTrailer(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of data.toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return fields(out, -1) as Record<string, string>;
}

/** A response message: its JSON with volatile values set aside; the bytes when none were. */
function messageOf(output: DescMessage, data: Buffer, binary: boolean): unknown {
  let json: unknown;
  try {
    json = binary
      ? toJson(output, fromBinary(output, data), { alwaysEmitImplicit: false })
      : JSON.parse(data.toString("utf8"));
  } catch (err) {
    return { undecodable: String(err), bytes: data.toString("hex") };
  }
  const scrubbed = scrub(json);
  const volatile = JSON.stringify(scrubbed).includes("<volatile>");
  if (binary && !volatile) return { proto: data.toString("hex"), json: scrubbed };
  return scrubbed;
}

/** What is compared of an answer. */
function comparable(answer: RawAnswer, rpc: EveryRpc | undefined) {
  const contentType = String(answer.headers["content-type"] ?? "");
  const binary = !contentType.includes("json");
  const output = rpc?.policy.method.output;
  let body: unknown;
  const enveloped =
    contentType.startsWith("application/grpc") || contentType.startsWith("application/connect+");
  if (enveloped) {
    body = envelopes(answer.body).map(({ flags, data }) => {
      if ((flags & 0x80) !== 0) return { flags, trailer: grpcWebTrailer(data) };
      if ((flags & 0x02) !== 0) return { flags, endStream: scrub(JSON.parse(data.toString())) };
      return {
        flags,
        message: output === undefined ? data.toString("hex") : messageOf(output, data, binary),
      };
    });
  } else if (answer.body.byteLength === 0) {
    body = "";
  } else if (contentType.includes("json")) {
    try {
      body = scrub(JSON.parse(answer.body.toString("utf8")));
    } catch {
      body = answer.body.toString("utf8");
    }
  } else if (answer.status === 200 && output !== undefined) {
    body = messageOf(output, answer.body, true);
  } else {
    body = answer.body.toString("utf8");
  }
  return {
    status: answer.status,
    headers: fields(answer.headers, answer.body.byteLength),
    trailers: fields(answer.trailers, -1),
    body,
    ...(answer.failure === undefined ? {} : { failure: answer.failure }),
  };
}

/** Sends `spec` to both servers of `pair` at once and expects the same answer from both. */
async function same(pair: Pair, spec: CallSpec): Promise<ReturnType<typeof comparable>> {
  const request = requestOf(spec);
  const [lean, reference] = await within(
    Promise.all([
      exchange(pair.lean.baseUrl, request).done,
      exchange(pair.reference.baseUrl, request).done,
    ]),
    10_000,
    `both answers to ${spec.rpc.name} over ${wireName(spec.wire)}`,
  );
  const expected = comparable(reference, spec.rpc);
  expect(
    comparable(lean, spec.rpc),
    "the lean lane's answer (the reference lane's expected)",
  ).toEqual(expected);
  return expected;
}

/** Connect's name of a gRPC status code: `invalid_argument`, …; `ok` for 0. */
function codeName(status: string | number): string {
  const n = Number(status);
  if (n === 0) return "ok";
  const name = Code[n];
  if (name === undefined) return `code ${status}`;
  return name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase());
}

/** The code a peer reads from an answer (as {@link comparable} gives it). */
function codeOf(answer: ReturnType<typeof comparable>): string {
  const contentType = String(answer.headers["content-type"] ?? "");
  const body = answer.body as
    | Array<Record<string, Record<string, unknown>>>
    | Record<string, unknown>;
  if (contentType.startsWith("application/grpc") && answer.status === 200) {
    const trailer = Array.isArray(body)
      ? body.find((e) => e.trailer !== undefined)?.trailer
      : undefined;
    const status =
      trailer?.["grpc-status"] ?? answer.trailers["grpc-status"] ?? answer.headers["grpc-status"];
    return status === undefined ? "no grpc-status" : codeName(String(status));
  }
  if (
    contentType.startsWith("application/connect+") &&
    answer.status === 200 &&
    Array.isArray(body)
  ) {
    const end = body.find((e) => e.endStream !== undefined)?.endStream;
    if (end === undefined) return "no end-stream message";
    const error = end.error as { code?: string } | undefined;
    return error?.code ?? "ok";
  }
  if (answer.status === 200) return "ok";
  const code = Array.isArray(body) ? undefined : body.code;
  return typeof code === "string" ? code : `http ${answer.status}`;
}

// --- The matrix -------------------------------------------------------------------------------

let caseNumber = 0;
/** A room and request id of a case's own (the same on both servers). */
function nextCase(): { room: string; requestId: string } {
  caseNumber += 1;
  return { room: `lanes-${caseNumber}`, requestId: `lanes-case-${caseNumber}` };
}

const MATRIX = EVERY_RPC.flatMap((rpc) =>
  WIRES.filter((wire) => allows(rpc, wire)).map((wire) => ({
    name: `${rpc.name} ${wireName(wire)}`,
    rpc,
    wire,
  })),
);

describe("every RPC × protocol × codec × HTTP version: the same answer on both lanes", () => {
  it.each(MATRIX)("$name", async ({ rpc, wire }) => {
    const { room, requestId } = nextCase();
    const message = encode(rpc.schema, validInit(rpc, room), wire.binary);
    const answer = await same(plain, { rpc, wire, requestId, messages: [message] });
    // The comparison is of real answers: a call that fails on both lanes alike is no evidence.
    expect(answer.failure, "the exchange ended without a complete answer").toBeUndefined();
    // A streaming response ends at its deadline; everything else answers.
    expect(codeOf(answer)).toBe(
      streamsResponse(rpc) && !isReflection(rpc) ? "deadline_exceeded" : "ok",
    );
  });
});

// --- Refusals ---------------------------------------------------------------------------------

const rpcOf = (path: string): EveryRpc => {
  const rpc = EVERY_RPC.find((r) => r.path === path);
  if (rpc === undefined) throw new Error(`${path} is not in the policy table`);
  return rpc;
};
const SEND = rpcOf(`/${ChatService.typeName}/${ChatService.method.sendMessage.name}`);
const SUBSCRIBE = rpcOf(`/${ChatService.typeName}/${ChatService.method.subscribeMessages.name}`);
const HISTORY = rpcOf(`/${ChatService.typeName}/${ChatService.method.getHistory.name}`);
const CHECK = rpcOf(`/${Health.typeName}/${Health.method.check.name}`);
/** The RPCs the lean lane serves, one of each kind it has. */
const HOT = [SEND, SUBSCRIBE, CHECK];

/** A token for `sub` signed with the auth pair's secret (or `secret`). */
async function token(sub: string, secret = SECRET): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt(now - 60)
    .setExpirationTime(now + 600)
    .sign(new TextEncoder().encode(secret));
}

/** Headers that take the streaming calls' deadline away. */
const NO_DEADLINE = { "grpc-timeout": undefined, "connect-timeout-ms": undefined };

const deadlineHeader = (w: Wire) =>
  w.protocol === "connect" ? "connect-timeout-ms" : "grpc-timeout";

/** One refusal, built for a wire: what to send, and the code both lanes must answer with. */
interface Refusal {
  name: string;
  /**
   * The code a peer reads (Connect's name), or `http <status>` for an answer without one;
   * undefined: whatever it is, the same on both lanes.
   */
  code?: string;
  /** The wires it is sent over (default: every one a call of its RPC can take). */
  wires?: readonly Wire[];
  rpcs: EveryRpc[];
  pair: () => Pair;
  build(
    rpc: EveryRpc,
    wire: Wire,
    room: string,
  ): Promise<Omit<CallSpec, "rpc" | "wire" | "requestId">>;
}

const REFUSALS: Refusal[] = [
  {
    name: "message too large",
    code: "resource_exhausted",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => {
      const init = { ...validInit(rpc, room) } as Record<string, unknown>;
      if (rpc === SEND) init.content = "x".repeat(READ_MAX_BYTES + 10);
      else if (rpc === SUBSCRIBE) init.user = "u".repeat(READ_MAX_BYTES + 10);
      else init.service = "s".repeat(READ_MAX_BYTES + 10);
      return { messages: [encode(rpc.schema, init, wire.binary)] };
    },
  },
  {
    name: "bad deadline header",
    code: "invalid_argument",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: { [deadlineHeader(wire)]: "soon" },
    }),
  },
  {
    name: "deadline over MAX_TIMEOUT_MS",
    code: "invalid_argument",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: { [deadlineHeader(wire)]: wire.protocol === "connect" ? "120000" : "120S" },
    }),
  },
  {
    name: "invalid argument (bad room name)",
    code: "invalid_argument",
    rpcs: [SEND, SUBSCRIBE, HISTORY],
    pair: () => plain,
    build: async (rpc, wire) => ({
      messages: [encode(rpc.schema, validInit(rpc, "no such room!"), wire.binary)],
    }),
  },
  {
    name: "undecodable body",
    code: "invalid_argument",
    rpcs: HOT,
    pair: () => plain,
    build: async (_rpc, wire) => {
      const garbage = wire.binary ? Buffer.from([0xff, 0xff, 0xff]) : Buffer.from("{not json");
      return { messages: [garbage] };
    },
  },
  {
    name: "bad content type",
    code: "unimplemented",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: { "content-type": "text/plain" },
    }),
  },
  {
    name: "unknown method",
    code: "unimplemented",
    rpcs: [SEND],
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      path: `/${ChatService.typeName}/NoSuchMethod`,
    }),
  },
  {
    name: "no token",
    code: "unauthenticated",
    rpcs: HOT,
    pair: () => auth,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
    }),
  },
  {
    name: "header block over MAX_HEADER_BYTES",
    code: "resource_exhausted",
    rpcs: HOT,
    pair: () => plain,
    // HTTP/1.1's cap is node:http's, answered before any request exists: the same on both.
    wires: WIRES.filter((w) => w.http === "2"),
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      // Over the default 16 KiB, under the twice as large list node:http2 advertises.
      headers: { "x-pad": "a".repeat(20_000) },
    }),
  },
  {
    name: "token signed with another secret",
    code: "unauthenticated",
    rpcs: HOT,
    pair: () => auth,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: {
        authorization: `Bearer ${await token("mallory", "not-the-secret-0123456789abcdef")}`,
      },
    }),
  },
];

/** A unary request body of one message after another. */
const twice = (m: Uint8Array, w: Wire) =>
  w.protocol === "connect" ? { rawBody: Buffer.concat([m, m]) } : { messages: [m, m] };

/** Protobuf field 99, varint 1: a field the request message does not have. */
const UNKNOWN_FIELD = Buffer.from([0x98, 0x06, 0x01]);

/** Odd but possible requests: whatever the answer, the same on both lanes. */
const ODD: Refusal[] = [
  {
    name: "empty body",
    rpcs: HOT,
    pair: () => plain,
    build: async () => ({ rawBody: new Uint8Array() }),
  },
  {
    name: "two request messages",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) =>
      twice(encode(rpc.schema, validInit(rpc, room), wire.binary), wire),
  },
  {
    name: "truncated envelope",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => {
      const whole = frame(encode(rpc.schema, validInit(rpc, room), wire.binary));
      return { rawBody: whole.subarray(0, whole.length - 1) };
    },
  },
  {
    name: "envelope flagged compressed without an encoding",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      rawBody: frame(encode(rpc.schema, validInit(rpc, room), wire.binary), 1),
    }),
  },
  {
    name: "compressed request (gzip)",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => {
      const zipped = gzipSync(encode(rpc.schema, validInit(rpc, room), wire.binary));
      if (wire.protocol === "connect" && rpc.kind === "unary") {
        return { rawBody: zipped, headers: { "content-encoding": "gzip" } };
      }
      const header = wire.protocol === "connect" ? "connect-content-encoding" : "grpc-encoding";
      return { rawBody: frame(zipped, 1), headers: { [header]: "gzip" } };
    },
  },
  {
    name: "unknown field",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => {
      const message = encode(rpc.schema, validInit(rpc, room), wire.binary);
      const odd = wire.binary
        ? Buffer.concat([message, UNKNOWN_FIELD])
        : Buffer.from(`{"nope":1,${Buffer.from(message).toString("utf8").slice(1)}`);
      return { messages: [odd] };
    },
  },
  {
    name: "origin not on the CORS list",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: { origin: "https://elsewhere.example" },
    }),
  },
  {
    name: "no origin",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: { origin: undefined },
    }),
  },
  {
    name: "gRPC content type without a codec",
    rpcs: HOT,
    pair: () => plain,
    wires: WIRES.filter((w) => w.protocol === "grpc" && w.binary),
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: { "content-type": "application/grpc" },
    }),
  },
  {
    name: "a query string",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      path: `${rpc.path}?from=test`,
    }),
  },
  {
    name: "deadline 0",
    rpcs: HOT,
    pair: () => plain,
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: { [deadlineHeader(wire)]: wire.protocol === "connect" ? "0" : "0m" },
    }),
  },
  {
    name: "no connect-protocol-version",
    rpcs: HOT,
    pair: () => plain,
    wires: WIRES.filter((w) => w.protocol === "connect"),
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
      headers: { "connect-protocol-version": undefined },
    }),
  },
  {
    name: "gRPC over HTTP/1.1",
    rpcs: HOT,
    pair: () => plain,
    wires: [
      { protocol: "grpc", binary: true, http: "1.1" },
      { protocol: "grpc", binary: false, http: "1.1" },
    ],
    build: async (rpc, wire, room) => ({
      messages: [encode(rpc.schema, validInit(rpc, room), wire.binary)],
    }),
  },
];

const REFUSAL_CASES = [...REFUSALS, ...ODD].flatMap((refusal) =>
  refusal.rpcs.flatMap((rpc) =>
    (refusal.wires ?? WIRES)
      .filter((wire) => allows(rpc, wire))
      .map((wire) => ({
        name: `${refusal.name}: ${rpc.name} ${wireName(wire)}`,
        refusal,
        rpc,
        wire,
      })),
  ),
);

describe("the same refusals on both lanes", () => {
  it.each(REFUSAL_CASES)("$name", async ({ refusal, rpc, wire }) => {
    const { room, requestId } = nextCase();
    const built = await refusal.build(rpc, wire, room);
    const answer = await same(refusal.pair(), { rpc, wire, requestId, ...built });
    // An open RPC (Health/Check) needs no token: the same success on both lanes.
    const code = refusal.pair() === auth && rpc.policy.open ? "ok" : refusal.code;
    if (code !== undefined) expect(codeOf(answer), "the code both lanes answered with").toBe(code);
  });

  const LIMIT_WIRES = WIRES.map((wire) => ({ name: wireName(wire), wire }));

  it.each(LIMIT_WIRES)("over the publish rate: SendMessage $name", async ({ wire }) => {
    const { room, requestId } = nextCase();
    const headers = { authorization: `Bearer ${await token(`rate-${requestId}`)}` };
    const messages = [encode(SEND.schema, validInit(SEND, room), wire.binary)];
    const first = await same(auth, { rpc: SEND, wire, requestId, messages, headers });
    expect(first.status).toBe(200);
    const second = await same(auth, {
      rpc: SEND,
      wire,
      requestId: `${requestId}b`,
      messages,
      headers,
    });
    expect(codeOf(second)).toBe("resource_exhausted");
  });

  it.each(LIMIT_WIRES)("over the stream cap: SubscribeMessages $name", async ({ wire }) => {
    const { room, requestId } = nextCase();
    const headers = { authorization: `Bearer ${await token(`cap-${requestId}`)}` };
    const messages = [encode(SUBSCRIBE.schema, validInit(SUBSCRIBE, room), wire.binary)];
    // The identity's one stream, held open (no deadline) on both servers while the second is
    // refused, then cancelled.
    const held = requestOf({
      rpc: SUBSCRIBE,
      wire,
      requestId,
      messages,
      headers: { ...headers, ...NO_DEADLINE },
    });
    const holders = [auth.lean, auth.reference].map((s) => exchange(s.baseUrl, held));
    await within(Promise.all(holders.map((h) => h.head)), 5_000, "the first streams' heads");
    const second = await same(auth, {
      rpc: SUBSCRIBE,
      wire,
      requestId: `${requestId}b`,
      messages,
      headers,
    });
    expect(codeOf(second)).toBe("resource_exhausted");
    for (const holder of holders) holder.cancel();
    await within(Promise.all(holders.map((h) => h.done)), 5_000, "the first streams' ends");
  });
});

// --- Shutdown (last: it stops the plain pair) -------------------------------------------------

describe("shutdown: SIGTERM mid-stream ends the stream the same way on both lanes", () => {
  it("every protocol × codec × HTTP version of SubscribeMessages", async () => {
    const calls = WIRES.map((wire) => {
      const { room, requestId } = nextCase();
      const messages = [encode(SUBSCRIBE.schema, validInit(SUBSCRIBE, room), wire.binary)];
      // No deadline: the stream is open when the server is told to stop.
      const request = requestOf({
        rpc: SUBSCRIBE,
        wire,
        requestId,
        messages,
        headers: NO_DEADLINE,
      });
      return {
        wire,
        lean: exchange(plain.lean.baseUrl, request),
        reference: exchange(plain.reference.baseUrl, request),
      };
    });
    await within(
      Promise.all(calls.flatMap((c) => [c.lean.head, c.reference.head])),
      5_000,
      "every stream's head",
    );
    const exits = await Promise.all([plain.lean.kill("SIGTERM"), plain.reference.kill("SIGTERM")]);
    expect(exits, "both servers stop gracefully").toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    for (const call of calls) {
      const [lean, reference] = await within(
        Promise.all([call.lean.done, call.reference.done]),
        5_000,
        `the ends of the streams over ${wireName(call.wire)}`,
      );
      const expected = comparable(reference, SUBSCRIBE);
      expect
        .soft(comparable(lean, SUBSCRIBE), `SubscribeMessages over ${wireName(call.wire)}`)
        .toEqual(expected);
      expect
        .soft(codeOf(expected), `SubscribeMessages over ${wireName(call.wire)}`)
        .toBe("unavailable");
    }
  });
});
