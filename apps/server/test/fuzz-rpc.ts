// Property-based fuzzing (fast-check) of every RPC's request (every method of the policy table,
// test/every-rpc.ts) over every protocol the one port speaks: gRPC (h2c), gRPC-Web and Connect
// (HTTP/1.1 and h2c), protobuf and JSON. Three properties: the body (random bytes, mutated valid
// messages, random JSON, valid-shaped JSON with wrong types), the envelope (flags, lengths,
// truncation, compressed flag without an encoding, zero or two messages) and the headers (content
// types, deadlines, encodings). Every answer must carry a code the protocol documents for that
// kind of input, never `internal` or `unknown`, and after each property the server still serves
// a SendMessage. Bounded: a fixed number of runs per property; the seed is printed (FUZZ_SEED=…
// replays a run).
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectProtocol } from "../src/edge/rpc/protocol.js";
import { EVERY_RPC, type EveryRpc } from "./every-rpc.js";
import { type ServerProcess, startServer } from "./harness.js";
import { frame, type RawAnswer, type RawProtocol, rawCall } from "./raw-call.js";
import { chatClient } from "./support.js";

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** Runs of each property, per store: 1,100 cases per store. */
const RUNS = { body: 500, envelope: 300, headers: 300 };
/** Every case made in this test file (reported at the end). */
let cases = 0;

/** Every RPC of the policy table (every-rpc.ts): a new one is fuzzed without an edit here. */
type Rpc = EveryRpc;
const RPCS: readonly Rpc[] = EVERY_RPC;

/** Codes an RPC documents besides the common ones, by path. */
const RPC_CODES: Record<string, string[]> = {
  // The health checking protocol: NOT_FOUND for a service the server does not know.
  "/grpc.health.v1.Health/Check": ["not_found"],
  // A request's epoch that is not the room's (chat.proto: FAILED_PRECONDITION, HistoryReset).
  "/chat.ChatService/GetHistory": ["failed_precondition"],
  "/chat.ChatService/SubscribeMessages": ["failed_precondition"],
  // A client_message_id reused in a room for a different message (chat.proto: ALREADY_EXISTS).
  "/chat.ChatService/SendMessage": ["already_exists"],
  "/chat.ChatService/UploadMessages": ["already_exists"],
  "/chat.ChatService/Chat": ["already_exists"],
};

interface Wire {
  name: string;
  protocol: RawProtocol;
  http: "1.1" | "2";
  json: boolean;
}
const WIRES: Wire[] = [
  { name: "grpc", protocol: "grpc", http: "2", json: false },
  { name: "grpc json", protocol: "grpc", http: "2", json: true },
  { name: "grpc-web h1.1", protocol: "grpc-web", http: "1.1", json: false },
  { name: "grpc-web h2", protocol: "grpc-web", http: "2", json: false },
  { name: "grpc-web json h1.1", protocol: "grpc-web", http: "1.1", json: true },
  { name: "connect proto h1.1", protocol: "connect", http: "1.1", json: false },
  { name: "connect proto h2", protocol: "connect", http: "2", json: false },
  { name: "connect json h1.1", protocol: "connect", http: "1.1", json: true },
  { name: "connect json h2", protocol: "connect", http: "2", json: true },
];

/** Bidi calls need HTTP/2 (Connect answers a bidi call over HTTP/1.1 with 505, by its spec). */
const wireFits = (rpc: Rpc, wire: Wire) => !(rpc.kind === "bidi" && wire.http === "1.1");
const rpcAndWire = fc
  .tuple(fc.constantFrom(...RPCS), fc.constantFrom(...WIRES))
  .filter(([rpc, wire]) => wireFits(rpc, wire));

/** Codes a peer may see for a request whose body is wrong (and headers right). */
const BODY_CODES = ["ok", "invalid_argument", "out_of_range", "deadline_exceeded"];
/**
 * Plus, for a broken envelope: `unimplemented` (no message or two for a unary or server-streaming
 * method, connect-es's and gRPC's code) and `resource_exhausted` (a length over READ_MAX_BYTES).
 */
const ENVELOPE_CODES = [...BODY_CODES, "unimplemented", "resource_exhausted"];
/**
 * Plus, for headers: a content type the method does not speak (Connect: HTTP 415 Unsupported
 * Media Type, or its Connect error body) and an unknown encoding (`unimplemented`, by the
 * protocols' specs).
 */
const HEADER_CODES = [...ENVELOPE_CODES, "http 415"];

/** The content type of a well-formed request. */
function contentType(rpc: Rpc, wire: Wire): string {
  const codec = wire.json ? "json" : "proto";
  if (wire.protocol === "grpc") return `application/grpc+${codec}`;
  if (wire.protocol === "grpc-web") return `application/grpc-web+${codec}`;
  return rpc.kind === "unary" ? `application/${codec}` : `application/connect+${codec}`;
}

/** Whether the protocol wraps the body in envelopes (all but Connect unary). */
const enveloped = (rpc: Rpc, wire: Wire) => wire.protocol !== "connect" || rpc.kind !== "unary";

/** Headers of a well-formed request, with a short deadline so no stream outlives its case. */
function baseHeaders(rpc: Rpc, wire: Wire): Record<string, string> {
  const headers: Record<string, string> = { "content-type": contentType(rpc, wire) };
  if (wire.protocol === "grpc") headers.te = "trailers";
  if (wire.protocol === "connect") headers["connect-timeout-ms"] = "100";
  else headers["grpc-timeout"] = "100m";
  return headers;
}

async function call(
  server: ServerProcess,
  rpc: Rpc,
  wire: Wire,
  headers: Record<string, string>,
  body: Uint8Array,
): Promise<RawAnswer> {
  cases++;
  return rawCall(
    server.baseUrl,
    {
      // The server answers in the protocol the content type names, whatever the client meant.
      protocol: detectProtocol(headers["content-type"]).protocol,
      http: wire.http,
      path: rpc.path,
      headers,
      body,
      streamingResponse: rpc.kind !== "unary",
      stopAtFirstMessage: true,
    },
    5_000,
  );
}

/** A valid message of `rpc`, in the wire's codec. */
function validBytes(rpc: Rpc, json: boolean): Uint8Array {
  return json ? Buffer.from(rpc.json()) : rpc.binary();
}

/** Byte-level mutations of a valid message: flips, cuts, insertions, repeats. */
function mutated(bytes: Uint8Array): fc.Arbitrary<Uint8Array> {
  const op = fc.oneof(
    fc.record({
      kind: fc.constant("flip" as const),
      at: fc.nat(),
      value: fc.integer({ min: 0, max: 255 }),
    }),
    fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
    fc.record({
      kind: fc.constant("insert" as const),
      at: fc.nat(),
      data: fc.uint8Array({ maxLength: 8 }),
    }),
    fc.record({ kind: fc.constant("repeat" as const), times: fc.integer({ min: 2, max: 4 }) }),
  );
  return fc.array(op, { minLength: 1, maxLength: 4 }).map((ops) => {
    let b = Buffer.from(bytes);
    for (const o of ops) {
      const at = b.length === 0 ? 0 : "at" in o ? o.at % b.length : 0;
      if (o.kind === "flip" && b.length > 0) b[at] = o.value;
      else if (o.kind === "cut") b = b.subarray(0, at);
      else if (o.kind === "insert") b = Buffer.concat([b.subarray(0, at), o.data, b.subarray(at)]);
      else if (o.kind === "repeat") b = Buffer.concat(Array.from({ length: o.times }, () => b));
    }
    return new Uint8Array(b);
  });
}

/** Any JSON value in a field: the wrong type for most fields. */
const wrongValue = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 20 }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
  fc.constantFrom("-1", "1e400", "18446744073709551616", "NaN", "\u0000", "\ud800"),
);

/** Bodies for `rpc` over `wire`: what a broken or hostile client sends as the message. */
function bodies(rpc: Rpc, wire: Wire): fc.Arbitrary<Uint8Array> {
  const fieldNames = rpc.schema.fields.flatMap((f) => [f.name, f.jsonName]);
  const shapedJson = fc
    .dictionary(fc.constantFrom(...(fieldNames.length > 0 ? fieldNames : ["x"])), wrongValue, {
      maxKeys: 4,
    })
    .map((o) => Buffer.from(JSON.stringify(o)));
  return fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    mutated(validBytes(rpc, wire.json)),
    fc.json({ maxDepth: 3 }).map((j) => Buffer.from(j)),
    shapedJson,
    fc.string({ unit: "binary", maxLength: 100 }).map((s) => Buffer.from(s)),
  );
}

/** Envelope damage: what is sent instead of one well-formed envelope of `payload`. */
const envelopeDamage = fc.oneof(
  fc.record({ kind: fc.constant("flags" as const), flags: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("length" as const), delta: fc.integer({ min: -20, max: 70_000 }) }),
  fc.record({ kind: fc.constant("truncate" as const), keep: fc.nat({ max: 30 }) }),
  fc.constant({ kind: "compressed" as const }),
  fc.constant({ kind: "empty" as const }),
  fc.record({ kind: fc.constant("two" as const), second: fc.uint8Array({ maxLength: 20 }) }),
  fc.record({
    kind: fc.constant("trailing" as const),
    extra: fc.uint8Array({ minLength: 1, maxLength: 4 }),
  }),
);

function damage(payload: Uint8Array, d: DamageValue): Buffer {
  const whole = frame(payload);
  switch (d.kind) {
    case "flags":
      whole[0] = d.flags;
      return whole;
    case "length":
      whole.writeUInt32BE(Math.max(0, payload.byteLength + d.delta), 1);
      return whole;
    case "truncate":
      return whole.subarray(0, Math.min(d.keep, whole.length - 1));
    case "compressed":
      whole[0] = 1;
      return whole;
    case "empty":
      return Buffer.alloc(0);
    case "two":
      return Buffer.concat([whole, frame(d.second)]);
    case "trailing":
      return Buffer.concat([whole, d.extra]);
  }
}
type DamageValue = typeof envelopeDamage extends fc.Arbitrary<infer T> ? T : never;

/** Header values a client may send: plausible, malformed and hostile. */
const contentTypes = fc.oneof(
  fc.constantFrom(
    "application/grpc",
    "application/grpc+proto",
    "application/grpc+json",
    "application/grpc+xml",
    "application/grpc-web",
    "application/grpc-web-text",
    "application/grpc-web+json",
    "application/grpc-web+thrift",
    "application/proto",
    "application/json",
    "application/json; charset=utf-16",
    "application/connect+proto",
    "application/connect+json",
    "application/connect+xml",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
    "APPLICATION/GRPC",
  ),
  fc.string({ maxLength: 40 }).filter((s) => /^[\t\x20-\x7e]*$/.test(s)),
);
const timeouts = fc.oneof(
  fc.constantFrom(
    "0n",
    "1m",
    "300m",
    "1S",
    "99999999S",
    "1H",
    "-1m",
    "1.5S",
    "m",
    "100000000m",
    "0",
    "300",
  ),
  fc.string({ maxLength: 12 }).filter((s) => /^[\x20-\x7e]*$/.test(s)),
);
const encodings = fc.oneof(
  fc.constantFrom("identity", "gzip", "br", "deflate", "snappy", "gzip, br", "GZIP", ""),
  fc.string({ maxLength: 10 }).filter((s) => /^[\x20-\x7e]*$/.test(s)),
);

/** Codes that mean the server broke: never acceptable for any input. */
function expectDocumented(answer: RawAnswer, allowed: string[], rpc: Rpc, what: string): void {
  // HTTP 415 is the documented answer to a content type the method does not speak, with or
  // without a Connect error body; its code may be any but the two that mean a broken server.
  const unsupported =
    allowed.includes("http 415") &&
    answer.httpStatus === 415 &&
    answer.code !== "internal" &&
    answer.code !== "unknown";
  if (
    !unsupported &&
    !allowed.includes(answer.code) &&
    !(RPC_CODES[rpc.path] ?? []).includes(answer.code)
  ) {
    throw new Error(
      `${what}: answered ${answer.code} (HTTP ${answer.httpStatus}) "${answer.message}"`,
    );
  }
}

/** Prints what fails with a reproducer (the case, hex bodies), without the run's noise. */
function describeCase(
  rpc: Rpc,
  wire: Wire,
  headers: Record<string, string>,
  body: Uint8Array,
): string {
  return `${rpc.path} over ${wire.name} headers=${JSON.stringify(headers)} body=${Buffer.from(body).toString("hex").slice(0, 200)}`;
}

/**
 * The three properties against one real server with `store` (one test file per store, so they
 * run in parallel and each stays well under 30 s).
 */
export function fuzzEveryRpc(store: "memory" | "sqlite"): void {
  describe(`fuzzing every RPC's request (STORE=${store})`, () => {
    let server: ServerProcess;
    beforeAll(async () => {
      server = await startServer({ store });
      console.log(`fuzz seed ${SEED} (FUZZ_SEED=${SEED} replays it)`);
    });
    afterAll(async () => {
      await server?.close();
      console.log(`fuzz cases against STORE=${store}: ${cases}`);
    });

    /** A legitimate call is served, and by the same process. */
    async function expectServing(): Promise<void> {
      const res = await chatClient(server.baseUrl).sendMessage({
        room: "fuzz-probe",
        user: "p",
        content: "alive",
      });
      expect(res.offset).toBeGreaterThan(0n);
      expect(server.pid).toBeDefined();
    }

    it("bodies: random bytes, mutated messages, random and wrongly typed JSON", async () => {
      await fc.assert(
        fc.asyncProperty(
          rpcAndWire.chain(([rpc, wire]) =>
            fc.tuple(fc.constant(rpc), fc.constant(wire), bodies(rpc, wire)),
          ),
          async ([rpc, wire, body]) => {
            const headers = baseHeaders(rpc, wire);
            const sent = enveloped(rpc, wire) ? frame(body) : body;
            const answer = await call(server, rpc, wire, headers, sent);
            expectDocumented(answer, BODY_CODES, rpc, describeCase(rpc, wire, headers, sent));
          },
        ),
        { numRuns: RUNS.body, seed: SEED },
      );
      await expectServing();
    });

    it("envelopes: bad flags, wrong lengths, truncated, compressed without an encoding, none or two", async () => {
      const envelopedWires = rpcAndWire.filter(([rpc, wire]) => enveloped(rpc, wire));
      await fc.assert(
        fc.asyncProperty(
          envelopedWires,
          envelopeDamage,
          fc.boolean(),
          async ([rpc, wire], d, valid) => {
            const headers = baseHeaders(rpc, wire);
            const payload = valid ? validBytes(rpc, wire.json) : Buffer.from([0x0a, 0x01, 0x61]);
            const sent = damage(payload, d);
            const answer = await call(server, rpc, wire, headers, sent);
            expectDocumented(answer, ENVELOPE_CODES, rpc, describeCase(rpc, wire, headers, sent));
          },
        ),
        { numRuns: RUNS.envelope, seed: SEED + 1 },
      );
      await expectServing();
    });

    it("headers: random content types, deadlines and encodings", async () => {
      await fc.assert(
        fc.asyncProperty(
          rpcAndWire,
          fc.option(contentTypes, { nil: undefined }),
          fc.option(timeouts, { nil: undefined }),
          fc.option(encodings, { nil: undefined }),
          fc.boolean(),
          async ([rpc, wire], type, timeout, encoding, compress) => {
            const headers = baseHeaders(rpc, wire);
            if (type !== undefined) headers["content-type"] = type;
            // A deadline header of the wire's protocol (the other protocol's is ignored).
            if (timeout !== undefined) {
              if (wire.protocol === "connect") headers["connect-timeout-ms"] = timeout;
              else headers["grpc-timeout"] = timeout;
            }
            let payload: Uint8Array = validBytes(rpc, wire.json);
            if (encoding !== undefined) {
              const name =
                wire.protocol === "connect"
                  ? rpc.kind === "unary"
                    ? "content-encoding"
                    : "connect-content-encoding"
                  : "grpc-encoding";
              headers[name] = encoding;
              if (compress) payload = gzipSync(payload);
            }
            const sent = enveloped(rpc, wire)
              ? frame(payload, compress && encoding !== undefined ? 1 : 0)
              : payload;
            const answer = await call(server, rpc, wire, headers, sent);
            expectDocumented(answer, HEADER_CODES, rpc, describeCase(rpc, wire, headers, sent));
          },
        ),
        { numRuns: RUNS.headers, seed: SEED + 2 },
      );
      await expectServing();
    });
  });
}
