import { readFileSync } from "node:fs";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";
import { eachMessage, SKIP } from "../../policy/each-message.js";
import { policyOf } from "../../policy/method-policy.js";
import { SETTINGS } from "../../settings.js";

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

/**
 * Verifies a compact JWT; rejects with a ConnectError (Unauthenticated) whose message says, in a
 * sentence, what is wrong and what to do ("invalid token: it expired at
 * 2026-12-07T10:00:00.000Z; get a new one"): see {@link tokenProblem}.
 */
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
      throw new ConnectError(
        `invalid token: ${tokenProblem(err, token, config)}`,
        Code.Unauthenticated,
      );
    }
    if (typeof payload.sub !== "string" || payload.sub === "") {
      throw new ConnectError(
        "invalid token: it has no sub claim (the user it speaks for)",
        Code.Unauthenticated,
      );
    }
    const rooms = stringList(payload, "rooms");
    return { sub: payload.sub, rooms, roles: stringList(payload, "roles") ?? [] };
  };
}

/**
 * The claim `name` of `payload`: a list of strings, or undefined when the token has none.
 * @throws ConnectError Unauthenticated "invalid token: its NAME claim must be a list of strings".
 */
function stringList(payload: JWTPayload, name: "rooms" | "roles"): string[] | undefined {
  const claim = payload[name];
  if (claim === undefined) return undefined;
  if (!(Array.isArray(claim) && claim.every((r): r is string => typeof r === "string"))) {
    throw new ConnectError(
      `invalid token: its ${name} claim must be a list of strings`,
      Code.Unauthenticated,
    );
  }
  return claim;
}

/** The token's protected header, or undefined when it does not decode. */
function headerOf(token: string): { alg?: unknown; kid?: unknown } | undefined {
  try {
    const header = JSON.parse(Buffer.from(token.split(".")[0] ?? "", "base64url").toString());
    return typeof header === "object" && header !== null ? header : undefined;
  } catch {
    return undefined;
  }
}

function headerAlg(token: string): string | undefined {
  const alg = headerOf(token)?.alg;
  return typeof alg === "string" ? alg : undefined;
}

/** A header value the caller chose, as a message quotes it: at most 64 characters. */
function quoted(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

/** A NumericDate claim (seconds since the epoch) as an ISO time, or undefined. */
function isoTime(seconds: unknown): string | undefined {
  return typeof seconds === "number" && Number.isFinite(seconds)
    ? new Date(seconds * 1000).toISOString()
    : undefined;
}

/**
 * What the token's verification failure (one of jose's errors) means, as a sentence that names
 * what to check: the setting its signature is checked against (AUTH_JWT_SECRET for HS256,
 * AUTH_JWKS_FILE's keys otherwise), the time it expired, the claim that failed.
 */
export function tokenProblem(err: unknown, token: string, config: AuthConfig): string {
  const secret = SETTINGS.authJwtSecret.env;
  const jwks = SETTINGS.authJwksFile.env;
  const alg = headerAlg(token);
  const keys =
    config.authJwksFile !== undefined && (config.authJwtSecret === undefined || alg !== "HS256")
      ? `the keys in ${jwks}`
      : secret;
  if (err instanceof errors.JWTExpired) {
    const at = isoTime(err.payload.exp);
    return `it expired${at === undefined ? "" : ` at ${at}`}; get a new one`;
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return `its signature does not match ${keys}: it was signed with another key`;
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === "nbf") {
      const at = isoTime(err.payload.nbf);
      return `it is not valid yet (its nbf claim${at === undefined ? "" : ` is ${at}`}); check the clocks or wait`;
    }
    if (err.claim === "iat") return "its iat claim (issued at) must be a number of seconds";
    return `its ${err.claim} claim is ${err.reason === "missing" ? "missing" : "invalid"} (${err.message})`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return `it is signed with ${alg === undefined ? "an algorithm" : quoted(alg)}, which ${keys} cannot verify${keys === secret ? " (HS256 only)" : ""}`;
  }
  if (err instanceof errors.JWKSNoMatchingKey) {
    const kid = headerOf(token)?.kid;
    return `no key in ${jwks} matches it (its header has ${typeof kid === "string" ? `kid ${quoted(kid)}` : "no kid"} and alg ${alg === undefined ? "none" : quoted(alg)})`;
  }
  if (err instanceof errors.JWKSMultipleMatchingKeys) {
    return `several keys in ${jwks} match it: give the token a kid that names one`;
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) {
    return `it is not a well-formed JWT (three base64url parts, header.payload.signature, with a JSON header and claims): ${err.message}`;
  }
  if (err instanceof errors.JOSENotSupported) return `it is not supported: ${err.message}`;
  if (err instanceof errors.JOSEError) return `it could not be verified: ${err.message}`;
  return "it is not a well-formed JWT (three base64url parts, header.payload.signature)";
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
