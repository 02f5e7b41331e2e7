import { readFileSync } from "node:fs";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";
import { eachMessage, SKIP } from "../policy/each-message.js";
import { policyOf } from "../policy/method-policy.js";

/**
 * Who is calling: the verified token's `sub`, the rooms its `rooms` claim allows, and the roles
 * its `roles` claim grants.
 */
export interface Identity {
  sub: string;
  /** Room names and `prefix-*` patterns; undefined: every room. */
  rooms: readonly string[] | undefined;
  /**
   * The `roles` claim's names (`admin`, policy/method-policy.ts's ROLES); empty without the
   * claim. A name the server does not know grants nothing.
   */
  roles: readonly string[];
}

/** The caller's identity, set by the auth interceptor (undefined while authentication is off). */
export const identityKey = createContextKey<Identity | undefined>(undefined, {
  description: "authenticated identity",
});

/** Where tokens are verified from; authentication is on when either is set. */
export interface AuthConfig {
  /** Shared secret for HS256 tokens (AUTH_JWT_SECRET). */
  authJwtSecret: string | undefined;
  /** A JSON Web Key Set file (AUTH_JWKS_FILE), for asymmetric tokens (RS256, ES256, EdDSA, …). */
  authJwksFile: string | undefined;
}

/** Verifies a compact JWT; rejects with a ConnectError (Unauthenticated) naming what is wrong. */
export type TokenVerifier = (token: string) => Promise<Identity>;

/**
 * The verifier for the configuration, or undefined when authentication is off. The JWKS file is
 * read once, here.
 */
export function createTokenVerifier(config: AuthConfig): TokenVerifier | undefined {
  let verify: (token: string) => Promise<{ payload: JWTPayload }>;
  if (config.authJwksFile !== undefined) {
    const jwks = createLocalJWKSet(
      JSON.parse(readFileSync(config.authJwksFile, "utf8")) as JSONWebKeySet,
    );
    const secret =
      config.authJwtSecret === undefined
        ? undefined
        : new TextEncoder().encode(config.authJwtSecret);
    verify = (token) =>
      // A token signed with the shared secret names no key; the others are looked up by `kid`.
      secret !== undefined && headerAlg(token) === "HS256"
        ? jwtVerify(token, secret, { algorithms: ["HS256"] })
        : jwtVerify(token, jwks);
  } else if (config.authJwtSecret !== undefined) {
    const secret = new TextEncoder().encode(config.authJwtSecret);
    verify = (token) => jwtVerify(token, secret, { algorithms: ["HS256"] });
  } else {
    return undefined;
  }
  return async (token) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await verify(token));
    } catch (err) {
      throw new ConnectError(`invalid token: ${reason(err)}`, Code.Unauthenticated);
    }
    if (typeof payload.sub !== "string" || payload.sub === "") {
      throw new ConnectError("invalid token: no sub claim", Code.Unauthenticated);
    }
    const rooms = stringList(payload, "rooms");
    return { sub: payload.sub, rooms, roles: stringList(payload, "roles") ?? [] };
  };
}

/**
 * The claim `name` of `payload`: a list of strings, or undefined when the token has none.
 * @throws ConnectError Unauthenticated "invalid token: NAME must be a list of strings".
 */
function stringList(payload: JWTPayload, name: "rooms" | "roles"): string[] | undefined {
  const claim = payload[name];
  if (claim === undefined) return undefined;
  if (!(Array.isArray(claim) && claim.every((r): r is string => typeof r === "string"))) {
    throw new ConnectError(
      `invalid token: ${name} must be a list of strings`,
      Code.Unauthenticated,
    );
  }
  return claim;
}

function headerAlg(token: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(token.split(".")[0] ?? "", "base64url").toString()) as {
      alg?: unknown;
    };
    return typeof header.alg === "string" ? header.alg : undefined;
  } catch {
    return undefined;
  }
}

function reason(err: unknown): string {
  if (err instanceof errors.JWTExpired) return "expired";
  if (err instanceof errors.JWSSignatureVerificationFailed) return "bad signature";
  if (err instanceof errors.JWTClaimValidationFailed) return `claim ${err.claim} ${err.reason}`;
  if (err instanceof errors.JOSEError) return err.code.replace(/^ERR_/, "").toLowerCase();
  return "malformed";
}

/**
 * Whether `room` is one of `patterns`: a name matches itself, `prefix-*` matches every name that
 * starts with `prefix-`, and `*` matches every room. No patterns (undefined) allows every room.
 */
export function roomAllowed(patterns: readonly string[] | undefined, room: string): boolean {
  if (patterns === undefined) return true;
  return patterns.some((p) => (p.endsWith("*") ? room.startsWith(p.slice(0, -1)) : p === room));
}

/**
 * Authentication with bearer tokens (RFC 6750) as a Connect interceptor: every call except the
 * open methods (health and reflection: `open` in policy/method-policy.ts) needs
 * `Authorization: Bearer <JWT>`. A missing, malformed, forged or expired token fails with
 * Unauthenticated (HTTP 401 over Connect). The identity is the token's `sub`: every request
 * message's `user` field (SendMessageRequest, SubscribeRequest, Message) is overwritten with it,
 * so a client cannot speak as someone else; a `room` outside the token's `rooms` claim fails with
 * PermissionDenied (403), and the responses of methods whose row has `filterRooms` (ListRooms,
 * WatchRooms) list only the rooms the claim allows. A method whose row names a `role`
 * (StreamMetrics, LogService.StreamLogs: `admin`) fails with PermissionDenied naming the role
 * unless the token's `roles` claim lists it, before the handler runs.
 */
export function createAuthInterceptor(verify: TokenVerifier): Interceptor {
  return (next) => async (req) => {
    const policy = policyOf(req.method);
    if (policy?.open === true) return next(req);
    const header = req.header.get("authorization");
    if (header === null || header === "") {
      throw new ConnectError(
        "missing bearer token (Authorization: Bearer <token>)",
        Code.Unauthenticated,
      );
    }
    const match = /^Bearer +([A-Za-z0-9._~+/=-]+)$/i.exec(header);
    if (match === null) {
      throw new ConnectError("Authorization must be Bearer <token>", Code.Unauthenticated);
    }
    const identity = await verify(match[1] as string);
    req.contextValues.set(identityKey, identity);
    const role = policy?.role;
    if (role !== undefined && !identity.roles.includes(role)) {
      throw new ConnectError(
        `${req.service.typeName}/${req.method.name} needs the ${role} role: the token of ${identity.sub} has no "${role}" in its roles claim`,
        Code.PermissionDenied,
      );
    }
    const enforce = <T>(message: T): T => {
      const fields = message as Record<string, unknown>;
      if (typeof fields.room === "string" && fields.room !== "") {
        if (!roomAllowed(identity.rooms, fields.room)) {
          throw new ConnectError(
            `${identity.sub} may not use room ${fields.room}`,
            Code.PermissionDenied,
          );
        }
      }
      if (typeof fields.user === "string") fields.user = identity.sub;
      return message;
    };
    const filter = identity.rooms === undefined ? undefined : policy?.filterRooms;
    const allowed = (room: string) => roomAllowed(identity.rooms, room);
    if (!req.stream) {
      enforce(req.message);
      const res = await next(req);
      if (filter !== undefined && !res.stream) filter(res.message, allowed);
      return res;
    }
    const res = await next({ ...req, message: eachMessage(req.message, { each: enforce }) });
    if (filter === undefined || !res.stream) return res;
    return {
      ...res,
      message: eachMessage(res.message, { each: (message) => filter(message, allowed) ?? SKIP }),
    };
  };
}
