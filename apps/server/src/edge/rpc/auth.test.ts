import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  createContextValues,
  createRouterTransport,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import {
  ChatService,
  type RoomsEvent,
  RoomsEventSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import {
  createAuthInterceptor,
  createTokenVerifier,
  identityKey,
  roomAllowed,
  type TokenVerifier,
} from "./auth.js";

describe("roomAllowed", () => {
  it("matches names, prefix-* patterns and *, and allows every room without a claim", () => {
    expect(roomAllowed(["lobby", "team-*"], "lobby")).toBe(true);
    expect(roomAllowed(["lobby", "team-*"], "team-red")).toBe(true);
    expect(roomAllowed(["lobby", "team-*"], "teams")).toBe(false);
    expect(roomAllowed(["lobby"], "lobby2")).toBe(false);
    expect(roomAllowed(["*"], "anything")).toBe(true);
    expect(roomAllowed([], "lobby")).toBe(false);
    expect(roomAllowed(undefined, "lobby")).toBe(true);
  });
});

describe("createTokenVerifier", () => {
  it("is off without a secret or a key set", () => {
    expect(createTokenVerifier({ authJwtSecret: undefined, authJwksFile: undefined })).toBe(
      undefined,
    );
  });

  it("verifies ES256 tokens with the keys of a JWKS file, by kid", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256" };
    const file = join(mkdtempSync(join(tmpdir(), "jwks-")), "jwks.json");
    writeFileSync(file, JSON.stringify({ keys: [jwk] }));
    const verify = createTokenVerifier({ authJwtSecret: undefined, authJwksFile: file });
    const token = await new SignJWT({ rooms: ["a-*"] })
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setSubject("zoe")
      .setExpirationTime("1m")
      .sign(privateKey);
    await expect(verify?.(token)).resolves.toEqual({ sub: "zoe", rooms: ["a-*"], roles: [] });
    const other = await generateKeyPair("ES256");
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setSubject("zoe")
      .sign(other.privateKey);
    await expect(verify?.(forged)).rejects.toThrow(/invalid token/);
  });
});

describe("the roles claim", () => {
  const secret = "roles-secret";
  const verify = createTokenVerifier({ authJwtSecret: secret, authJwksFile: undefined });
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("ann")
      .setExpirationTime("1m")
      .sign(new TextEncoder().encode(secret));

  it("is read as a list of role names; no claim grants none", async () => {
    await expect(verify?.(await sign({ roles: ["admin"] }))).resolves.toMatchObject({
      roles: ["admin"],
    });
    await expect(verify?.(await sign({}))).resolves.toMatchObject({ roles: [] });
  });

  it.each([["admin"], [["admin", 1]], [{ admin: true }]])(
    "refuses a token whose roles claim is %j: unauthenticated",
    async (roles) => {
      const err = await verify?.(await sign({ roles })).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.Unauthenticated);
      expect(err?.rawMessage).toBe("invalid token: its roles claim must be a list of strings");
    },
  );

  it("admits StreamMetrics and StreamLogs only with the admin role, naming it when refused", async () => {
    const transport = createRouterTransport(
      (router) => {
        router.service(ChatService, {
          async *streamMetrics() {
            yield { name: "cpu_usage" };
          },
          listRooms: () => ({}),
        });
        router.service(LogService, {
          async *streamLogs() {
            yield { message: "a line" };
          },
        });
      },
      { router: { interceptors: [createAuthInterceptor(verify as TokenVerifier)] } },
    );
    const chat = createClient(ChatService, transport);
    const logs = createClient(LogService, transport);
    const first = async (stream: AsyncIterable<unknown>): Promise<unknown> => {
      for await (const m of stream) return m;
      return undefined;
    };
    const denied = async (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    for (const claims of [{}, { roles: [] }, { roles: ["moderator"] }, { rooms: ["team-*"] }]) {
      const headers = { authorization: `Bearer ${await sign(claims)}` };
      const metrics = await denied(first(chat.streamMetrics({}, { headers })));
      expect(metrics?.code, JSON.stringify(claims)).toBe(Code.PermissionDenied);
      expect(metrics?.rawMessage).toBe(
        'chat.ChatService/StreamMetrics needs the admin role: the token of ann has no "admin" in its roles claim',
      );
      const tail = await denied(first(logs.streamLogs({}, { headers })));
      expect(tail?.code).toBe(Code.PermissionDenied);
      expect(tail?.rawMessage).toMatch(/^chat\.LogService\/StreamLogs needs the admin role: /);
      // Methods without a role stay open to every valid token.
      await expect(chat.listRooms({}, { headers })).resolves.toBeDefined();
    }
    const admin = { authorization: `Bearer ${await sign({ roles: ["admin"], rooms: ["x"] })}` };
    await expect(first(chat.streamMetrics({}, { headers: admin }))).resolves.toMatchObject({
      name: "cpu_usage",
    });
    await expect(first(logs.streamLogs({}, { headers: admin }))).resolves.toMatchObject({
      message: "a line",
    });
  });
});

describe("createTokenVerifier with a JWKS file and a shared secret", () => {
  it("refuses expired and not-yet-valid tokens on both paths, and accepts valid ones", async () => {
    const { publicKey, privateKey } = await generateKeyPair("EdDSA");
    const jwk = { ...(await exportJWK(publicKey)), kid: "ed1", alg: "EdDSA" };
    const file = join(mkdtempSync(join(tmpdir(), "jwks-")), "jwks.json");
    writeFileSync(file, JSON.stringify({ keys: [jwk] }));
    const secret = "shared-secret-0123456789abcdef";
    const verify = createTokenVerifier({ authJwtSecret: secret, authJwksFile: file });
    if (verify === undefined) throw new Error("verifier expected");
    const now = Math.floor(Date.now() / 1000);
    const paths = {
      jwks: (jwt: SignJWT) => jwt.setProtectedHeader({ alg: "EdDSA", kid: "ed1" }).sign(privateKey),
      secret: (jwt: SignJWT) =>
        jwt.setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(secret)),
    };
    for (const [path, sign] of Object.entries(paths)) {
      const base = () => new SignJWT({}).setSubject("zed").setIssuedAt(now - 600);
      await expect(verify(await sign(base().setExpirationTime(now + 60))), path).resolves.toEqual({
        sub: "zed",
        rooms: undefined,
        roles: [],
      });
      await expect(verify(await sign(base().setExpirationTime(now - 60))), path).rejects.toThrow(
        `invalid token: it expired at ${new Date((now - 60) * 1000).toISOString()}; get a new one`,
      );
      await expect(
        verify(
          await sign(
            base()
              .setExpirationTime(now + 600)
              .setNotBefore(now + 300),
          ),
        ),
        path,
      ).rejects.toThrow(
        `invalid token: it is not valid yet (its nbf claim is ${new Date((now + 300) * 1000).toISOString()}); check the clocks or wait`,
      );
    }
  });
});

describe("what a refused token is told", () => {
  const secret = "words-secret-0123456789";
  const key = new TextEncoder().encode(secret);
  /** The message and code `verify` rejects `token` with. */
  const refusal = async (verify: TokenVerifier | undefined, token: string) => {
    const err = await verify?.(token).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    return { code: err?.code, message: err?.rawMessage };
  };

  it("says in a sentence what is wrong and names the setting to check, unauthenticated", async () => {
    const verify = createTokenVerifier({ authJwtSecret: secret, authJwksFile: undefined });
    const other = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("ann")
      .sign(new TextEncoder().encode("another-secret"));
    const { privateKey } = await generateKeyPair("ES256");
    const es256 = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256" })
      .setSubject("ann")
      .sign(privateKey);
    const noSub = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).sign(key);
    const cases: [string, string][] = [
      [
        other,
        "invalid token: its signature does not match AUTH_JWT_SECRET: it was signed with another key",
      ],
      [
        es256,
        'invalid token: it is signed with "ES256", which AUTH_JWT_SECRET cannot verify (HS256 only)',
      ],
      [noSub, "invalid token: it has no sub claim (the user it speaks for)"],
    ];
    for (const [token, message] of cases) {
      expect(await refusal(verify, token)).toEqual({ code: Code.Unauthenticated, message });
    }
    // Not a JWT at all: jose's ERR_JWS_INVALID ("jws_invalid" before) becomes what a JWT is.
    for (const token of ["not-a-token", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30"]) {
      const { code, message } = await refusal(verify, token);
      expect(code).toBe(Code.Unauthenticated);
      expect(message).toMatch(
        /^invalid token: it is not a well-formed JWT \(three base64url parts, header\.payload\.signature/,
      );
      expect(message).not.toMatch(/jws_invalid|ERR_/);
    }
  });

  it("with a JWKS file: names AUTH_JWKS_FILE's keys and the kid none of them has", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256" };
    const file = join(mkdtempSync(join(tmpdir(), "jwks-")), "jwks.json");
    writeFileSync(file, JSON.stringify({ keys: [jwk] }));
    const verify = createTokenVerifier({ authJwtSecret: undefined, authJwksFile: file });
    const unknownKid = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "k2" })
      .setSubject("ann")
      .sign(privateKey);
    expect(await refusal(verify, unknownKid)).toEqual({
      code: Code.Unauthenticated,
      message:
        'invalid token: no key in AUTH_JWKS_FILE matches it (its header has kid "k2" and alg "ES256")',
    });
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setSubject("ann")
      .sign((await generateKeyPair("ES256")).privateKey);
    expect(await refusal(verify, forged)).toEqual({
      code: Code.Unauthenticated,
      message:
        "invalid token: its signature does not match the keys in AUTH_JWKS_FILE: it was signed with another key",
    });
  });
});

describe("createAuthInterceptor", () => {
  it("puts the identity in the context and the sub in `user`", async () => {
    const secret = "unit-secret";
    const verify = createTokenVerifier({ authJwtSecret: secret, authJwksFile: undefined });
    if (verify === undefined) throw new Error("verifier expected");
    let seen: { user: string; sub: string | undefined } | undefined;
    const transport = createRouterTransport(
      (router) => {
        router.service(ChatService, {
          sendMessage(req, ctx) {
            seen = { user: req.user, sub: ctx.values.get(identityKey)?.sub };
            return {};
          },
        });
      },
      { router: { interceptors: [createAuthInterceptor(verify)] } },
    );
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("amy")
      .setExpirationTime("1m")
      .sign(new TextEncoder().encode(secret));
    await createClient(ChatService, transport).sendMessage(
      { room: "r", user: "not-amy", content: "x" },
      { headers: { authorization: `Bearer ${token}` } },
    );
    expect(seen).toEqual({ user: "amy", sub: "amy" });
  });

  it("wraps only the response streams whose row filters rooms: SubscribeMessages' stays the handler's own", async () => {
    const interceptor = createAuthInterceptor(async () => ({
      sub: "amy",
      rooms: ["team-*"],
      roles: [],
    }));
    const call = async (method: DescMethod, output: AsyncIterable<unknown>) => {
      const req = {
        stream: true,
        service: method.parent,
        method,
        header: new Headers({ authorization: "Bearer t" }),
        contextValues: createContextValues(),
        message: (async function* () {
          yield { room: "team-a", user: "someone" };
        })(),
      } as unknown as StreamRequest;
      const res = await interceptor(async (r) => {
        for await (const _ of (r as StreamRequest).message);
        return { stream: true, message: output } as unknown as StreamResponse;
      })(req);
      return (res as StreamResponse).message;
    };
    const subscription = (async function* () {})();
    expect(await call(ChatService.method.subscribeMessages, subscription)).toBe(subscription);

    const events = (async function* () {
      yield create(RoomsEventSchema, { snapshot: true, rooms: [{ name: "lobby" }] });
      yield create(RoomsEventSchema, { rooms: [{ name: "lobby" }] });
      yield create(RoomsEventSchema, { rooms: [{ name: "team-b" }, { name: "x" }] });
    })();
    const seen: RoomsEvent[] = [];
    for await (const e of await call(ChatService.method.watchRooms, events)) {
      seen.push(e as RoomsEvent);
    }
    expect(seen.map((e) => [e.snapshot, e.rooms.map((r) => r.name)])).toEqual([
      [true, []],
      [false, ["team-b"]],
    ]);
  });
});
