// The `admin` role from the token's `roles` claim, as callers see it: with authentication on,
// the operator's RPCs (LogService.StreamLogs, ChatService.StreamMetrics) answer a token without
// the role with permission_denied naming the role, in the caller's own protocol (gRPC through
// @grpc/grpc-js, gRPC-Web, Connect JSON and proto), and an admin token reads them. With
// authentication off they stay open to everyone.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_DIR, ServerProcess } from "./harness.js";
import {
  Code,
  ConnectError,
  chatClient,
  logClient,
  type TransportCase,
  within,
} from "./support.js";

const SECRET = "roles-test-secret-0123456789abcdef";

/** A token for `sub` with the given claims (rooms, roles), valid for five minutes. */
function mint(
  sub: string,
  claims: { rooms?: readonly string[]; roles?: unknown },
): Promise<string> {
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(SECRET));
}

/** The refusal's message for `method` ("chat.LogService/StreamLogs") and the token of `sub`. */
const refusal = (method: string, sub: string) =>
  `${method} needs the admin role: the token of ${sub} has no "admin" in its roles claim`;

/** The tokens that must not reach the operator's RPCs, by what they lack. */
const NOT_ADMIN = [
  ["a room-scoped token", "alice", { rooms: ["team-*"] }],
  ["a token without a roles claim", "bob", {}],
  ["a token with other roles", "carol", { roles: ["moderator"] }],
] as const;

/** The operator's RPCs: how each protocol client opens them, by name. */
const OPERATOR_RPCS = ["chat.LogService/StreamLogs", "chat.ChatService/StreamMetrics"] as const;
type OperatorRpc = (typeof OPERATOR_RPCS)[number];

/** The connect-es transports: gRPC-Web (binary), Connect JSON and Connect proto. */
const CONNECT_ES: readonly Pick<
  TransportCase,
  "name" | "protocol" | "httpVersion" | "useBinaryFormat"
>[] = [
  { name: "gRPC-Web", protocol: "grpcweb", httpVersion: "1.1", useBinaryFormat: true },
  { name: "Connect JSON", protocol: "connect", httpVersion: "1.1", useBinaryFormat: false },
  { name: "Connect proto", protocol: "connect", httpVersion: "2", useBinaryFormat: true },
];

/** The first message of `rpc` over `tc` with `token`, or the ConnectError it ends with. */
async function firstOver(
  baseUrl: string,
  tc: (typeof CONNECT_ES)[number],
  rpc: OperatorRpc,
  token: string | undefined,
): Promise<unknown> {
  const headers = token === undefined ? undefined : { authorization: `Bearer ${token}` };
  const controller = new AbortController();
  const stream =
    rpc === "chat.LogService/StreamLogs"
      ? logClient(baseUrl, tc).streamLogs({ backlog: 1 }, { headers, signal: controller.signal })
      : chatClient(baseUrl, tc).streamMetrics(
          { intervalSeconds: 1 },
          { headers, signal: controller.signal },
        );
  const first = async () => {
    for await (const message of stream) return message;
    throw new Error(`${rpc} ended without a message`);
  };
  try {
    return await within(first(), 10_000, `the first message or error of ${rpc} over ${tc.name}`);
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  } finally {
    controller.abort();
  }
}

describe("the admin role, with authentication on", () => {
  let server: ServerProcess;
  let grpcClients: { chat: grpc.Client; logs: grpc.Client };
  beforeAll(async () => {
    server = await ServerProcess.start({ store: "memory", env: { AUTH_JWT_SECRET: SECRET } });
    const definition = protoLoader.loadSync(["chat/chat.proto", "chat/log.proto"], {
      includeDirs: [join(REPO_DIR, "proto")],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      chat: {
        ChatService: grpc.ServiceClientConstructor;
        LogService: grpc.ServiceClientConstructor;
      };
    };
    const address = `127.0.0.1:${server.port}`;
    const insecure = grpc.credentials.createInsecure();
    grpcClients = {
      chat: new loaded.chat.ChatService(address, insecure),
      logs: new loaded.chat.LogService(address, insecure),
    };
  });
  afterAll(async () => {
    grpcClients?.chat.close();
    grpcClients?.logs.close();
    await server?.close();
  });

  /** The first message of `rpc` through @grpc/grpc-js, or the ServiceError it ends with. */
  function firstOverGrpcJs(rpc: OperatorRpc, token: string): Promise<unknown> {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    const stream: grpc.ClientReadableStream<unknown> =
      rpc === "chat.LogService/StreamLogs"
        ? (
            grpcClients.logs as unknown as {
              StreamLogs(r: object, m: grpc.Metadata): grpc.ClientReadableStream<unknown>;
            }
          ).StreamLogs({ backlog: 1 }, metadata)
        : (
            grpcClients.chat as unknown as {
              StreamMetrics(r: object, m: grpc.Metadata): grpc.ClientReadableStream<unknown>;
            }
          ).StreamMetrics({ interval_seconds: 1 }, metadata);
    return within(
      new Promise((resolve) => {
        stream.on("data", (message: unknown) => {
          resolve(message);
          stream.cancel();
        });
        stream.on("error", (err: grpc.ServiceError) => resolve(err));
        stream.on("end", () => resolve(new Error(`${rpc} ended without a message`)));
      }),
      10_000,
      `${rpc} over @grpc/grpc-js`,
    );
  }

  describe.each(OPERATOR_RPCS)("%s", (rpc) => {
    it.each(NOT_ADMIN)(
      "gRPC (@grpc/grpc-js): %s gets PERMISSION_DENIED naming the role",
      async (_what, sub, claims) => {
        const err = (await firstOverGrpcJs(rpc, await mint(sub, claims))) as grpc.ServiceError;
        expect(err.code, String(err)).toBe(grpc.status.PERMISSION_DENIED);
        expect(err.details).toBe(refusal(rpc, sub));
      },
    );

    it("gRPC (@grpc/grpc-js): an admin token reads it", async () => {
      const first = await firstOverGrpcJs(rpc, await mint("root", { roles: ["admin"] }));
      expect(first).not.toBeInstanceOf(Error);
      expect(first).toHaveProperty(rpc.endsWith("StreamLogs") ? "message" : "name");
    });

    describe.each(CONNECT_ES)("$name", (tc) => {
      it.each(NOT_ADMIN)(
        "%s gets permission_denied naming the role",
        async (_what, sub, claims) => {
          const err = await firstOver(server.baseUrl, tc, rpc, await mint(sub, claims));
          expect(err).toBeInstanceOf(ConnectError);
          expect((err as ConnectError).code).toBe(Code.PermissionDenied);
          expect((err as ConnectError).rawMessage).toBe(refusal(rpc, sub));
        },
      );

      it("an admin token (room-scoped too) reads it", async () => {
        const token = await mint("root", { roles: ["admin"], rooms: ["ops-*"] });
        const first = await firstOver(server.baseUrl, tc, rpc, token);
        expect(first).not.toBeInstanceOf(ConnectError);
        expect(first).toHaveProperty(rpc.endsWith("StreamLogs") ? "message" : "name");
      });
    });
  });

  it("a roles claim that is not a list of strings is refused as an invalid token", async () => {
    const err = await firstOver(
      server.baseUrl,
      CONNECT_ES[1] as (typeof CONNECT_ES)[number],
      "chat.LogService/StreamLogs",
      await mint("root", { roles: "admin" }),
    );
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect((err as ConnectError).rawMessage).toBe(
      "invalid token: its roles claim must be a list of strings",
    );
  });

  it("a plain HTTP client reads the refusal in the Connect stream's end-of-stream message", async () => {
    // A server stream over the Connect protocol: an enveloped request; an error before the
    // first message comes as the end-of-stream envelope (flags 0x02) of an HTTP 200 answer.
    const token = await mint("alice", { rooms: ["team-*"] });
    const body = Buffer.from(JSON.stringify({ backlog: 1 }));
    const envelope = Buffer.alloc(5);
    envelope.writeUInt32BE(body.length, 1);
    const res = await fetch(`${server.baseUrl}/chat.LogService/StreamLogs`, {
      method: "POST",
      headers: { "content-type": "application/connect+json", authorization: `Bearer ${token}` },
      body: Buffer.concat([envelope, body]),
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    // One end-of-stream envelope (flags 0x02) carrying the error.
    expect(bytes[0]).toBe(2);
    expect(JSON.parse(bytes.subarray(5).toString())).toEqual({
      error: {
        code: "permission_denied",
        message: refusal("chat.LogService/StreamLogs", "alice"),
      },
    });
  });

  it("/metrics stays open to scrapers without a token (aggregate counts, no users, rooms or peers)", async () => {
    const res = await fetch(`${server.baseUrl}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("grpc_server_handled_total");
    // The refusals above are counted, and nothing names a caller.
    expect(text).toMatch(/grpc_method="StreamLogs".*grpc_code="PermissionDenied"/);
    expect(text).not.toMatch(/alice|127\.0\.0\.1:\d+"/);
  });
});

describe("the admin role, with authentication off", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start({ store: "memory" });
  });
  afterAll(async () => {
    await server?.close();
  });

  it.each(OPERATOR_RPCS)("%s is open to every caller, without a token", async (rpc) => {
    const first = await firstOver(
      server.baseUrl,
      CONNECT_ES[1] as (typeof CONNECT_ES)[number],
      rpc,
      undefined,
    );
    expect(first).not.toBeInstanceOf(ConnectError);
  });
});
