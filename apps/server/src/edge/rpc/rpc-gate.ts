import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { Code } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import type { FastifyReply, FastifyRequest } from "fastify";
import { detectProtocol } from "./protocol.js";
import { type Refusal, refuse, respecGrpcMessages } from "./refusal.js";

/** What the gate needs of a router's handler (connect-es's UniversalHandler properties). */
export type GatedHandler = Pick<
  UniversalHandler,
  "requestPath" | "allowedMethods" | "supportedContentType" | "method"
>;

/** The request as far as the gate looks at it: method, HTTP version, URL and headers. */
type Head = Pick<
  IncomingMessage | Http2ServerRequest,
  "method" | "httpVersionMajor" | "url" | "headers"
>;

/**
 * Why connect-es would not run `handler` for `req`, as the Refusal to answer instead, or
 * undefined when it would. The same decisions as connect-es's protocol negotiation
 * (protocol/universal-handler.js `negotiateProtocol`, and the Connect unary handler's GET
 * checks), which answer them with an empty body; here each one gets a message and the caller's
 * protocol, all with Connect code Unimplemented (the Connect spec's code for a request the
 * server does not support, as for an unsupported compression):
 *
 * - a bidi method over HTTP/1.x: HTTP 505, `connection: close` (a full-duplex client would hang);
 * - an HTTP method the RPC does not take: HTTP 405 with `Allow` (POST; POST, GET for the
 *   NO_SIDE_EFFECTS methods, Connect GET);
 * - a POST whose Content-Type is none of the RPC's (gRPC, gRPC-Web, Connect unary or stream,
 *   by the method's kind), or a Connect GET without `encoding=json|proto`: HTTP 415 with
 *   `Accept-Post`.
 */
export function rpcRefusalOf(handler: GatedHandler, req: Head): Refusal | undefined {
  const method = req.method ?? "";
  const path = handler.requestPath;
  const unary = handler.method.methodKind === "unary";
  if (handler.method.methodKind === "bidi_streaming" && req.httpVersionMajor < 2) {
    return {
      code: Code.Unimplemented,
      message: `${path} is a bidi stream: it needs HTTP/2`,
      httpStatus: 505,
      headers: { connection: "close" },
    };
  }
  if (!handler.allowedMethods.includes(method)) {
    const allow = handler.allowedMethods.join(", ");
    return {
      code: Code.Unimplemented,
      message: `HTTP ${method} is not allowed for ${path}; use ${handler.allowedMethods.join(" or ")}`,
      httpStatus: 405,
      headers: { allow },
    };
  }
  const contentType = headerOf(req.headers["content-type"]);
  const acceptPost = unary
    ? "application/json, application/proto, application/grpc, application/grpc-web"
    : "application/connect+json, application/connect+proto, application/grpc, application/grpc-web";
  const unsupported = (message: string): Refusal => ({
    code: Code.Unimplemented,
    message,
    httpStatus: 415,
    headers: { "accept-post": acceptPost },
  });
  if (method === "GET") {
    // Only the Connect handler takes GET; with no Content-Type it goes straight to it.
    if (contentType !== "" && !handler.supportedContentType(contentType)) {
      return unsupported(`content type "${contentType}" is not supported for ${path}`);
    }
    const encoding = new URL(req.url ?? "/", "http://x").searchParams.get("encoding");
    if (encoding !== "json" && encoding !== "proto") {
      return unsupported(
        `a Connect GET of ${path} needs encoding=json or encoding=proto (got ${
          encoding === null ? "none" : `"${encoding}"`
        }) and message=<the request>`,
      );
    }
    return undefined;
  }
  if (!handler.supportedContentType(contentType)) {
    const types = unary
      ? "application/json or application/proto (Connect unary)"
      : "application/connect+json or application/connect+proto (Connect streaming)";
    return unsupported(
      `content type ${contentType === "" ? "(none)" : `"${contentType}"`} is not supported for ${path}; use ${types}, application/grpc or application/grpc-web`,
    );
  }
  return undefined;
}

/**
 * A Fastify onRequest hook that refuses, before the body is read or parsed, every request
 * connect-es would turn away with an empty body (see {@link rpcRefusalOf}), in the caller's own
 * protocol (edge/rpc/refusal.ts: Connect error JSON with the HTTP status; gRPC and gRPC-Web a
 * trailers-only response, grpc-status 12). Requests for other paths pass. Running before the
 * body parsers also keeps Fastify's own parsers (text/plain, forms) and their own error bodies
 * off every RPC path.
 *
 * A gRPC request it lets through gets its grpc-message trailer re-encoded the spec's way
 * (edge/rpc/refusal.ts, respecGrpcMessages), so that C-core callers read connect-es's messages.
 *
 * `handlers` is read on each request, so it can be filled after the hook is added (the router
 * is built while connect-fastify registers).
 */
export function createRpcGate(handlers: Map<string, GatedHandler>) {
  return (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    if (!reply.sent) {
      // The route Fastify matched (connect-fastify's is the RPC's path), not the raw URL.
      const route = request.routeOptions.url;
      const handler = route === undefined ? undefined : handlers.get(route);
      const refusal = handler === undefined ? undefined : rpcRefusalOf(handler, request.raw);
      if (refusal !== undefined) {
        reply.hijack();
        refuse(request.raw, reply.raw, refusal);
      } else if (
        handler !== undefined &&
        detectProtocol(request.headers["content-type"]).protocol === "grpc"
      ) {
        respecGrpcMessages(reply.raw);
      }
    }
    done();
  };
}

function headerOf(value: string | string[] | undefined): string {
  return (Array.isArray(value) ? value[0] : value) ?? "";
}
