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
