import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { cors as connectCors } from "@connectrpc/connect";
import type { FastifyCorsOptions } from "@fastify/cors";

/**
 * @fastify/cors options for an allow-list of origins, built from connect's own CORS constants
 * (the methods and headers the Connect, gRPC-Web and gRPC protocols need) plus `Authorization`
 * for bearer tokens and `X-Switchboard-Client` (the dashboard names itself for the access log).
 * An empty list turns CORS off: browsers may then call from the same origin only (the
 * dashboard, which the server serves itself).
 */
export function corsOptions(origins: readonly string[]): FastifyCorsOptions {
  if (origins.length === 0) return { origin: false };
  return {
    origin: [...origins],
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization", "X-Switchboard-Client"],
    exposedHeaders: [...connectCors.exposedHeaders],
    // Browsers cache a preflight answer for up to 2 hours (Chromium's cap).
    maxAge: 7200,
  };
}

/**
 * The CORS headers @fastify/cors sets, with {@link corsOptions}`(origins)`, on the answer to a
 * request that is not a preflight (every RPC call), from the request's headers: for a call the
 * lean lane serves beneath Fastify (edge/rpc/lean-lane.ts), whose answer must carry the same
 * headers as Fastify's routes give it (test/lanes-differential.test.ts compares them).
 * `Vary: Origin`, `Access-Control-Allow-Origin` with the caller's origin when the list has it,
 * and `Access-Control-Expose-Headers`; with `*` in the list, `Access-Control-Allow-Origin: *` and
 * no `Vary`; with no list, undefined (nothing).
 */
export function corsResponseHeaders(
  origins: readonly string[],
): (headers: IncomingHttpHeaders) => OutgoingHttpHeaders | undefined {
  if (origins.length === 0) return () => undefined;
  const exposed = [...connectCors.exposedHeaders].join(", ");
  if (origins.includes("*")) {
    const any = { "access-control-allow-origin": "*", "access-control-expose-headers": exposed };
    return () => any;
  }
  const allowed = new Set(origins);
  const refused = { vary: "Origin", "access-control-expose-headers": exposed };
  return (headers) => {
    const origin = headers.origin;
    if (origin === undefined || !allowed.has(origin)) return refused;
    return { ...refused, "access-control-allow-origin": origin };
  };
}
