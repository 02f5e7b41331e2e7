import type { FastifyReply, FastifyRequest } from "fastify";
import { Code, refuse } from "./refusal.js";

/** The longest path quoted back in the message, characters. */
const MAX_PATH_SHOWN = 200;

/**
 * Fastify's not-found handler: a request for a path no route serves (an unknown service or
 * method, or any other unknown path) is Unimplemented in the caller's protocol
 * (edge/rpc/refusal.ts): gRPC and gRPC-Web get a trailers-only response with grpc-status 12 in one
 * HEADERS frame with END_STREAM, as the gRPC over HTTP/2 spec ("Responses") requires, so that
 * grpc-js, C-core and grpc-go report UNIMPLEMENTED; anything else gets HTTP 404 with the Connect
 * error body `{"code":"unimplemented","message":"unknown method POST /pkg.Service/Method"}`
 * (Connect protocol spec, "HTTP to Error Code": 404 ↔ unimplemented).
 */
export function notFoundHandler(req: FastifyRequest, reply: FastifyReply): void {
  const path = req.url.split("?", 1)[0] as string;
  // The caller's own path, cut short: it goes into a header (grpc-message) for gRPC callers.
  const shown = path.length > MAX_PATH_SHOWN ? `${path.slice(0, MAX_PATH_SHOWN)}…` : path;
  const message = `unknown method ${req.method} ${shown}`;
  reply.hijack();
  refuse(req.raw, reply.raw, { code: Code.Unimplemented, message, httpStatus: 404 });
}
