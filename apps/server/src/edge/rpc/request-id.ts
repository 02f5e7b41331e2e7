import { randomUUID } from "node:crypto";
import { createContextKey } from "@connectrpc/connect";

/** The request's id in a call's context values (set by app.ts from Fastify's `request.id`). */
export const requestIdKey = createContextKey<string>("", { description: "request id" });

/** The header a caller or a proxy in front may name a request by (nginx's `$request_id`). */
export const REQUEST_ID_HEADER = "x-request-id";

/** What a caller's own request id may look like: short, printable, no spaces. */
const CALLER_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/;

/**
 * Fastify's `genReqId`: a request's id is its caller's `x-request-id` when that is a short
 * token (1–128 characters of `A–Z a–z 0–9 . _ : / + = -`), so that a proxy's id and the
 * server's log line name the same request; otherwise a random UUID. The access log line of
 * every RPC carries it (`requestId`), with the cause of an Internal error.
 */
export function genRequestId(req: { headers: Record<string, string | string[] | undefined> }) {
  const given = req.headers[REQUEST_ID_HEADER];
  return typeof given === "string" && CALLER_ID.test(given) ? given : randomUUID();
}
