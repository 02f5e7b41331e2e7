import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { REPO_DIR, type ServerProcess, startServer } from "./harness.js";
import { uniqueRoom, within } from "./support.js";
import { skipWithout, toolPath } from "./tools.js";

// Error conformance with two gRPC implementations that share no code with connect-es or with
// each other: @grpc/grpc-js (TypeScript, messages by protobuf.js through proto-loader) and gRPC
// C-core (Debian's python3-grpcio; messages by python3-protobuf from a `buf build` descriptor
// set, generic stubs, no generated code: grpc-core-client.py). Each error case is made by both,
// and both must report the same status code with a message that says what happened.
// A trailers-only answer written wrong (HEADERS without END_STREAM) is read by grpc-js as
// INTERNAL "Received RST_STREAM with code 0" and by C-core as UNKNOWN "Stream removed".

const run = promisify(execFile);
const SECRET = "grpc-conformance-secret-0123456789abcdef";
/** READ_MAX_BYTES of the open server: small, so that one message can be over it. */
const READ_MAX_BYTES = 2048;

/** One call and the status both clients must report for it. */
interface Case {
  name: string;
  server: "open" | "secured";
  path: string;
  kind: "unary" | "server_stream";
  /** The request as proto3 JSON (proto field names). */
  request: Record<string, unknown>;
  /** For a method the schema lacks: the request and response types to use. */
  requestType?: string;
  responseType?: string;
  /** Sent as `authorization: Bearer <token>`. */
  token?: string;
  timeoutS?: number;
  /** How many calls in a row (the last one is asserted; the ones before must succeed). */
  repeat?: number;
  code: keyof typeof grpc.status;
  message: RegExp;
}

/** What a client reported for a case. */
interface Outcome {
  name: string;
  code: string;
  details: string;
  messages: number;
}

async function mint(sub: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt(now - 60)
    .setExpirationTime(now + 600)
    .sign(new TextEncoder().encode(SECRET));
}

/** The cases, for one client (`who` keeps each client's rooms and rate buckets its own). */
async function casesFor(who: string): Promise<Case[]> {
  const send = "/chat.ChatService/SendMessage";
  const subscribe = "/chat.ChatService/SubscribeMessages";
  const asSend = {
    requestType: "chat.SendMessageRequest",
    responseType: "chat.SendMessageResponse",
  };
  const room = uniqueRoom(who);
  return [
    {
      name: "unknown method",
      server: "open",
      path: "/chat.ChatService/NoSuchMethod",
      kind: "unary",
      request: { room, user: who, content: "x" },
      ...asSend,
      code: "UNIMPLEMENTED",
      message: /^unknown method POST \/chat\.ChatService\/NoSuchMethod$/,
    },
    {
      name: "unknown service",
      server: "open",
      path: "/chat.NoSuchService/SendMessage",
      kind: "unary",
      request: { room, user: who, content: "x" },
      ...asSend,
      code: "UNIMPLEMENTED",
      message: /^unknown method POST \/chat\.NoSuchService\/SendMessage$/,
    },
    {
      name: "unknown method, secured server (before authentication)",
      server: "secured",
      path: "/chat.ChatService/NoSuchMethod",
      kind: "unary",
      request: { room, user: who, content: "x" },
      ...asSend,
      code: "UNIMPLEMENTED",
      message: /^unknown method POST \/chat\.ChatService\/NoSuchMethod$/,
    },
    {
      name: "invalid argument (unary)",
      server: "open",
      path: send,
      kind: "unary",
      request: { room: "", user: who, content: "x" },
      code: "INVALID_ARGUMENT",
      message: /^room: value is required \[required\]$/,
    },
    {
      name: "invalid argument (server stream)",
      server: "open",
      path: subscribe,
      kind: "server_stream",
      request: { room: "no spaces allowed", user: who },
      code: "INVALID_ARGUMENT",
      message:
        /^room: does not match regex pattern `\^\[A-Za-z0-9\._-\]\{1,64\}\$` \[string\.pattern\]$/,
    },
    {
      name: "resource exhausted: a message over READ_MAX_BYTES",
      server: "open",
      path: send,
      kind: "unary",
      request: { room, user: who, content: "x".repeat(READ_MAX_BYTES + 100) },
      code: "RESOURCE_EXHAUSTED",
      message: new RegExp(`over READ_MAX_BYTES \\(${READ_MAX_BYTES}\\)`),
    },
    {
      name: "resource exhausted: PUBLISH_RATE",
      server: "secured",
      path: send,
      kind: "unary",
      request: { room, user: who, content: "again" },
      token: await mint(`rate-${who}`),
      repeat: 2,
      code: "RESOURCE_EXHAUSTED",
      message: /^publish rate exceeded \(PUBLISH_RATE 1\/s\); retry in \d+ ms$/,
    },
    {
      name: "deadline exceeded on a SubscribeMessages stream",
      server: "open",
      path: subscribe,
      kind: "server_stream",
      request: { room, user: who },
      timeoutS: 0.4,
      code: "DEADLINE_EXCEEDED",
      message: /deadline|timed out/i,
    },
    {
      name: "unauthenticated: no token (unary)",
      server: "secured",
      path: send,
      kind: "unary",
      request: { room, user: who, content: "x" },
      code: "UNAUTHENTICATED",
      message: /^missing bearer token \(Authorization: Bearer <token>\)$/,
    },
    {
      name: "unauthenticated: no token (server stream)",
      server: "secured",
      path: subscribe,
      kind: "server_stream",
      request: { room, user: who },
      code: "UNAUTHENTICATED",
      message: /^missing bearer token/,
    },
    {
      name: "unauthenticated: a token signed with another key",
      server: "secured",
      path: send,
      kind: "unary",
      request: { room, user: who, content: "x" },
      token: `${(await mint(who)).slice(0, -4)}AAAA`,
      code: "UNAUTHENTICATED",
      message: /^invalid token: /,
    },
  ];
}

let open: ServerProcess;
let secured: ServerProcess;
let imageDir: string;
let image: string;

beforeAll(async () => {
  // Both started at once; each one that started is kept, so afterAll stops it even when the
  // other failed.
  const [a, b] = await Promise.allSettled([
    startServer({ store: "memory", env: { READ_MAX_BYTES: String(READ_MAX_BYTES) } }),
    startServer({
      store: "memory",
      env: { AUTH_JWT_SECRET: SECRET, PUBLISH_RATE: "1", PUBLISH_BURST: "1" },
    }),
  ]);
  if (a.status === "fulfilled") open = a.value;
  if (b.status === "fulfilled") secured = b.value;
  for (const r of [a, b]) if (r.status === "rejected") throw r.reason;
  imageDir = mkdtempSync(join(tmpdir(), "switchboard-image-"));
  image = join(imageDir, "image.binpb");
  await run(toolPath("buf"), ["build", "-o", image], {
    cwd: REPO_DIR,
    timeout: 60_000,
    env: { ...process.env, BUF_CACHE_DIR: join(imageDir, "buf-cache") },
  });
}, 90_000);

afterAll(async () => {
  await Promise.all([open?.close(), secured?.close()]);
  if (imageDir !== undefined) rmSync(imageDir, { recursive: true, force: true });
});

const target = (c: Case) => `127.0.0.1:${(c.server === "open" ? open : secured).port}`;

function expectConformant(cases: Case[], outcomes: Outcome[]): void {
  const got = outcomes.map((o) => ({ name: o.name, code: o.code, details: o.details }));
  const want = cases.map((c) => ({
    name: c.name,
    code: c.code,
    details: expect.stringMatching(c.message),
  }));
  expect(got).toEqual(want);
}

describe("gRPC error conformance", () => {
  test("@grpc/grpc-js", async () => {
    const definition = protoLoader.loadSync("chat/chat.proto", {
      includeDirs: [join(REPO_DIR, "proto")],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
    });
    const chat = definition["chat.ChatService"] as protoLoader.ServiceDefinition;
    const clients = new Map<string, grpc.Client>();
    const clientFor = (address: string) => {
      let client = clients.get(address);
      if (client === undefined) {
        client = new grpc.Client(address, grpc.credentials.createInsecure());
        clients.set(address, client);
      }
      return client;
    };
    const call = (c: Case): Promise<Outcome> => {
      // A path the schema lacks is called with SendMessage's message types.
      const methodName = c.path.split("/")[2] as string;
      const method = (chat[methodName] ?? chat.SendMessage) as protoLoader.MethodDefinition<
        object,
        object
      >;
      const metadata = new grpc.Metadata();
      if (c.token !== undefined) metadata.set("authorization", `Bearer ${c.token}`);
      const options: grpc.CallOptions =
        c.timeoutS === undefined ? {} : { deadline: Date.now() + c.timeoutS * 1000 };
      const client = clientFor(target(c));
      return new Promise<Outcome>((resolve) => {
        const fail = (err: grpc.ServiceError, messages: number) =>
          resolve({ name: c.name, code: grpc.status[err.code], details: err.details, messages });
        if (c.kind === "unary") {
          client.makeUnaryRequest(
            c.path,
            method.requestSerialize,
            method.responseDeserialize,
            c.request,
            metadata,
            options,
            (err) => {
              if (err === null) resolve({ name: c.name, code: "OK", details: "", messages: 1 });
              else fail(err, 0);
            },
          );
          return;
        }
        let messages = 0;
        const stream = client.makeServerStreamRequest(
          c.path,
          method.requestSerialize,
          method.responseDeserialize,
          c.request,
          metadata,
          options,
        );
        stream.on("data", () => messages++);
        stream.on("error", (err: grpc.ServiceError) => fail(err, messages));
        stream.on("end", () => resolve({ name: c.name, code: "OK", details: "", messages }));
      });
    };
    try {
      const cases = await casesFor("grpcjs");
      const outcomes: Outcome[] = [];
      for (const c of cases) {
        for (let i = 1; i < (c.repeat ?? 1); i++) expect((await call(c)).code).toBe("OK");
        outcomes.push(await within(call(c), 10_000, c.name));
      }
      expectConformant(cases, outcomes);
    } finally {
      for (const client of clients.values()) client.close();
    }
  });

  // $PYTHON, else the first python3 on PATH with grpcio and protobuf (tools.ts).
  test.skipIf(skipWithout("python3-grpcio"))("gRPC C-core (python3-grpcio)", async () => {
    const cases = await casesFor("ccore");
    const outcomes: Outcome[] = [];
    // One script run per server, the calls in order.
    for (const server of ["open", "secured"] as const) {
      const mine = cases.filter((c) => c.server === server);
      const calls = mine.flatMap((c) =>
        Array.from({ length: c.repeat ?? 1 }, (_, i) => ({
          name: i + 1 < (c.repeat ?? 1) ? `${c.name} (warm-up ${i + 1})` : c.name,
          path: c.path,
          kind: c.kind,
          request: c.request,
          ...(c.requestType === undefined ? {} : { requestType: c.requestType }),
          ...(c.responseType === undefined ? {} : { responseType: c.responseType }),
          ...(c.token === undefined ? {} : { metadata: [["authorization", `Bearer ${c.token}`]] }),
          ...(c.timeoutS === undefined ? {} : { timeout: c.timeoutS }),
        })),
      );
      const lines = await runPython(target(mine[0] as Case), calls);
      for (const o of lines) {
        if (o.name.includes("(warm-up")) expect(o, o.name).toMatchObject({ code: "OK" });
        else outcomes.push(o);
      }
    }
    const byName = new Map(outcomes.map((o) => [o.name, o]));
    expectConformant(
      cases,
      cases.map(
        (c) => byName.get(c.name) ?? { name: c.name, code: "(none)", details: "", messages: 0 },
      ),
    );
  });
});

/** Runs grpc-core-client.py against `address` with `calls`; its JSON lines. */
async function runPython(address: string, calls: object[]): Promise<Outcome[]> {
  const child = spawn(
    toolPath("python3-grpcio"),
    [join(REPO_DIR, "apps/server/test/grpc-core-client.py"), address, image],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk;
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk;
  });
  child.stdin.end(JSON.stringify(calls));
  const code = await within(
    new Promise<number | null>((resolve) => child.once("close", resolve)),
    30_000,
    "grpc-core-client.py",
  ).catch((err: unknown) => {
    child.kill("SIGKILL");
    throw err;
  });
  if (code !== 0) throw new Error(`grpc-core-client.py exited with ${code}:\n${stderr}`);
  return stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Outcome);
}
