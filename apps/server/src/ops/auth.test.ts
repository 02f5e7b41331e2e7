import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type DescMethod } from "@bufbuild/protobuf";
import {
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
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { createAuthInterceptor, createTokenVerifier, identityKey, roomAllowed } from "./auth.js";

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
    await expect(verify?.(token)).resolves.toEqual({ sub: "zoe", rooms: ["a-*"] });
    const other = await generateKeyPair("ES256");
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setSubject("zoe")
      .sign(other.privateKey);
    await expect(verify?.(forged)).rejects.toThrow(/invalid token/);
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
      });
      await expect(verify(await sign(base().setExpirationTime(now - 60))), path).rejects.toThrow(
        "invalid token: expired",
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
      ).rejects.toThrow(/invalid token: claim nbf/);
    }
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
    const interceptor = createAuthInterceptor(async () => ({ sub: "amy", rooms: ["team-*"] }));
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
