// Authentication and per-identity limits as a client sees them, on every protocol: bearer JWTs
// (HS256 secret), the `rooms` claim, the identity overriding `user`, the open health and
// reflection services, the publish rate, the stream cap and the message size limit. One server.
import { createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type Message } from "@switchboard/proto/gen/chat/chat_pb";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerProcess } from "./harness.js";
import { Code, codeName, connectErrorOf, StreamReader, uniqueRoom } from "./support.js";

const SECRET = "ops-auth-test-secret-0123456789abcdef";

/** A token signed with `secret` (default: the server's) for `sub`, valid for `ttlS` seconds. */
async function mint(
  sub: string,
  options: { rooms?: string[]; ttlS?: number; secret?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(options.rooms === undefined ? {} : { rooms: options.rooms })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt(now - 120)
    .setExpirationTime(now + (options.ttlS ?? 300));
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

const PROTOCOLS = [
  { name: "connect", protocol: "connect", httpVersion: "1.1", useBinaryFormat: false },
  { name: "grpc", protocol: "grpc", httpVersion: "2", useBinaryFormat: true },
  { name: "grpc-web", protocol: "grpcweb", httpVersion: "1.1", useBinaryFormat: true },
] as const;
type ProtocolCase = (typeof PROTOCOLS)[number];

function chat(server: ServerProcess, pc: ProtocolCase, token?: string) {
  return createClient(
    ChatService,
    createNodeTransport({
      baseUrl: server.baseUrl,
      protocol: pc.protocol,
      httpVersion: pc.httpVersion,
      useBinaryFormat: pc.useBinaryFormat,
      ...(token === undefined ? {} : { token }),
    }),
  );
}

describe("authentication", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start({
      store: "memory",
      env: { AUTH_JWT_SECRET: SECRET },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  describe.each(PROTOCOLS)("over $name", (pc) => {
    const send = (token: string | undefined, room: string, user = "mallory") =>
      chat(server, pc, token).sendMessage({ room, user, content: `hello over ${pc.name}` });

    it("refuses a call without a token (Unauthenticated)", async () => {
      const err = await connectErrorOf(send(undefined, uniqueRoom("auth")));
      expect(codeName(err.code)).toBe("Unauthenticated");
    });

    it.each([
      ["a malformed token", async () => "not-a-jwt"],
      ["a forged token", () => mint("alice", { secret: "someone-elses-secret-0123456789" })],
      ["an expired token", () => mint("alice", { ttlS: -60 })],
    ])("refuses %s (Unauthenticated)", async (_what, token) => {
      const err = await connectErrorOf(send(await token(), uniqueRoom("auth")));
      expect(codeName(err.code)).toBe("Unauthenticated");
    });

    it("stores a message as the token's sub, whatever `user` the client sent", async () => {
      const room = uniqueRoom(`team-${pc.name}`);
      const client = chat(server, pc, await mint(`alice-${pc.name}`));
      await client.sendMessage({ room, user: "mallory", content: "who am I" });
      const history = await client.getHistory({ room, limit: 10 });
      expect(history.messages.map((m) => m.user)).toEqual([`alice-${pc.name}`]);
    });

    it("refuses a room outside the token's rooms claim (PermissionDenied)", async () => {
      const token = await mint(`bob-${pc.name}`, { rooms: ["team-*", "lobby"] });
      const err = await connectErrorOf(send(token, uniqueRoom("secret")));
      expect(codeName(err.code)).toBe("PermissionDenied");
      await expect(send(token, "lobby")).resolves.toMatchObject({ offset: expect.any(BigInt) });
    });

    it("ends a subscription to a forbidden room with PermissionDenied", async () => {
      const token = await mint(`carol-${pc.name}`, { rooms: ["team-*"] });
      const client = chat(server, pc, token);
      const reader = new StreamReader<Message>((signal) =>
        client.subscribeMessages({ room: uniqueRoom("private"), user: "carol" }, { signal }),
      );
      const err = await reader.ended;
      expect(err === undefined ? "clean end" : codeName(err.code)).toBe("PermissionDenied");
    });
  });

  it("answers Unauthenticated with HTTP 401 and PermissionDenied with 403 over Connect", async () => {
    const post = async (token: string | undefined, room: string) =>
      fetch(`${server.baseUrl}/chat.ChatService/SendMessage`, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify({ room, user: "x", content: "hi" }),
      });
    const missing = await post(undefined, "lobby");
    expect(missing.status).toBe(401);
    expect(await missing.json()).toMatchObject({ code: "unauthenticated" });
    const forbidden = await post(await mint("dave", { rooms: ["lobby"] }), "elsewhere");
    expect(forbidden.status).toBe(403);
    expect(await forbidden.json()).toMatchObject({ code: "permission_denied" });
  });

  it("lists only the rooms the claim allows", async () => {
    const mine = uniqueRoom("team-list");
    const other = uniqueRoom("other-list");
    const all = chat(server, PROTOCOLS[0], await mint("erin"));
    await all.sendMessage({ room: mine, user: "erin", content: "a" });
    await all.sendMessage({ room: other, user: "erin", content: "b" });
    const limited = chat(server, PROTOCOLS[0], await mint("frank", { rooms: ["team-*"] }));
    const names = (await limited.listRooms({})).rooms.map((r) => r.name);
    expect(names).toContain(mine);
    expect(names).not.toContain(other);
  });

  it("leaves health, reflection, /healthz, /readyz and /metrics open", async () => {
    const health = createClient(
      Health,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc" }),
    );
    expect((await health.check({ service: "" })).status).toBe(1);
    for (const path of ["/healthz", "/readyz", "/metrics"]) {
      expect((await fetch(`${server.baseUrl}${path}`)).status, path).toBe(200);
    }
  });
});

describe("limits", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start({
      store: "memory",
      env: {
        AUTH_JWT_SECRET: SECRET,
        PUBLISH_RATE: "1",
        PUBLISH_BURST: "3",
        MAX_STREAMS_PER_IDENTITY: "2",
        READ_MAX_BYTES: "2048",
        MAX_CONTENT_BYTES: "65536",
        MAX_TIMEOUT_MS: "5000",
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("refuses publishing beyond the rate with ResourceExhausted and the delay to wait", async () => {
    const room = uniqueRoom("rate");
    const client = chat(server, PROTOCOLS[0], await mint("grace"));
    // The burst (3) passes, the fourth within the same second does not.
    for (let i = 0; i < 3; i++) await client.sendMessage({ room, user: "g", content: `m${i}` });
    const err = await connectErrorOf(client.sendMessage({ room, user: "g", content: "m3" }));
    expect(codeName(err.code)).toBe("ResourceExhausted");
    expect(err.rawMessage).toMatch(/retry in \d+ ms/);
    // Another identity has its own bucket.
    const other = chat(server, PROTOCOLS[0], await mint("heidi"));
    await expect(other.sendMessage({ room, user: "h", content: "x" })).resolves.toBeDefined();
  });

  it("caps the streams one identity may have open", async () => {
    const token = await mint("ivan");
    const client = chat(server, PROTOCOLS[1], token);
    const open = [0, 1].map(
      () =>
        new StreamReader<Message>((signal) =>
          client.subscribeMessages({ room: uniqueRoom("cap"), user: "i" }, { signal }),
        ),
    );
    for (const reader of open) await reader.count(1);
    const third = new StreamReader<Message>((signal) =>
      client.subscribeMessages({ room: uniqueRoom("cap"), user: "i" }, { signal }),
    );
    const err = await third.ended;
    expect(err === undefined ? "clean end" : codeName(err.code)).toBe("ResourceExhausted");
    // Closing one frees its place (once the server has seen the cancel: retry briefly).
    open[0]?.cancel();
    await open[0]?.ended;
    let again: StreamReader<Message> | undefined;
    for (let attempt = 0; attempt < 50 && again === undefined; attempt++) {
      const reader = new StreamReader<Message>((signal) =>
        client.subscribeMessages({ room: uniqueRoom("cap"), user: "i" }, { signal }),
      );
      const first = await reader.count(1).then(
        () => "open",
        () => "ended",
      );
      if (first === "open") again = reader;
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(again).toBeDefined();
    again?.cancel();
    open[1]?.cancel();
  });

  it("refuses a deadline over MAX_TIMEOUT_MS with InvalidArgument and honours one under it", async () => {
    for (const pc of PROTOCOLS) {
      const client = chat(server, pc, await mint(`kim-${pc.name}`));
      const err = await connectErrorOf(client.listRooms({}, { timeoutMs: 60_000 }));
      expect(codeName(err.code), pc.name).toBe("InvalidArgument");
      await expect(client.listRooms({}, { timeoutMs: 4_000 })).resolves.toBeDefined();
    }
  });

  it("refuses a message larger than READ_MAX_BYTES with ResourceExhausted", async () => {
    const client = chat(server, PROTOCOLS[1], await mint("judy"));
    const err = await connectErrorOf(
      client.sendMessage({ room: uniqueRoom("big"), user: "j", content: "x".repeat(4096) }),
    );
    expect(codeName(err.code)).toBe("ResourceExhausted");
    expect(err.code).toBe(Code.ResourceExhausted);
  });
});
