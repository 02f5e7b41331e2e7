import type { ContextValues } from "@connectrpc/connect";
import * as connect from "@connectrpc/connect/protocol-connect";
import * as grpc from "@connectrpc/connect/protocol-grpc";
import * as grpcWeb from "@connectrpc/connect/protocol-grpc-web";
import {
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from "fastify";
import type { NodeServedHandler } from "./unary-handler.js";

/**
 * Fastify routes for Switchboard's straight-line unary handlers (edge/rpc/unary-handler.ts) and its
 * SubscribeMessages handler (edge/rpc/subscribe-handler.ts: any {@link NodeServedHandler}), in
 * place of connect-fastify's route for them. connect-fastify's route adapts every request with
 * connect-node (`universalRequestFromNodeRequest`: a web `Headers`, a `URL`, an AbortController
 * with a `close` listener that aborts without a reason, so one DOMException per call, and async
 * generators around the body) and writes the answer with a promise per chunk; in the CPU profile
 * of unary gRPC SendMessage that adapter and its DOMException were ~10% of the busy time
 * (bench/README.md, "Unary path"). Here a request the handler answers itself is served from
 * Node's request and response (`UnaryHandler.serveNode`); anything else (compressed bodies,
 * Connect GET) goes to the same UniversalHandler through connect-node, exactly as
 * connect-fastify would.
 *
 * Everything else stays Fastify's: the routes live on the same server, its onRequest hooks
 * (CORS, edge/rpc/rpc-gate.ts refusals and the gRPC message re-encoding) run first, the headers
 * they set on the reply are copied to the response as connect-fastify does, and the router's
 * interceptors (auth, limits, validation, the access log, metrics, the error mapper) run around
 * every call inside the handler. Content types are taken as connect-fastify takes them (no-op
 * parsers, so that Fastify reads no body).
 *
 * `contextValues` is connect-fastify's option of the same name (the request id, the peer).
 */
export function unaryRoutes(
  handlers: NodeServedHandler[],
  contextValues: (req: FastifyRequest) => ContextValues,
): FastifyPluginCallback {
  return (instance, _opts, done) => {
    instance.addContentTypeParser(
      [
        connect.contentTypeUnaryJson,
        connect.contentTypeStreamJson,
        grpcWeb.contentTypeProto,
        grpcWeb.contentTypeJson,
        grpc.contentTypeProto,
        grpc.contentTypeJson,
      ],
      noopContentTypeParser,
    );
    instance.addContentTypeParser(grpc.contentTypeRegExp, noopContentTypeParser);
    instance.addContentTypeParser(grpcWeb.contentTypeRegExp, noopContentTypeParser);
    instance.addContentTypeParser(connect.contentTypeRegExp, noopContentTypeParser);
    for (const handler of handlers) {
      instance.all(handler.requestPath, (req: FastifyRequest, reply: FastifyReply) => {
        const values = contextValues(req);
        copyReplyHeaders(reply);
        if (!handler.serveNode(req.raw, reply.raw, values)) {
          void serveUniversal(handler, req, reply, values);
        }
      });
    }
    done();
  };
}

/** connect-fastify's route body: the request through connect-node's adapters. */
async function serveUniversal(
  handler: NodeServedHandler,
  req: FastifyRequest,
  reply: FastifyReply,
  values: ContextValues,
): Promise<void> {
  try {
    const res = await handler(
      universalRequestFromNodeRequest(req.raw, reply.raw, undefined, values),
    );
    await universalResponseToNodeResponse(res, reply.raw);
  } catch (err) {
    // connect-fastify logs these with console.error; a write to a gone client is not news.
    req.log.debug({ err }, "unary answer not written");
  }
}

/** Headers Fastify's hooks set on the reply (CORS), moved to the raw response. */
function copyReplyHeaders(reply: FastifyReply): void {
  const headers = reply.getHeaders();
  for (const key in headers) {
    const value = headers[key];
    if (value !== undefined) reply.raw.setHeader(key, value);
  }
}

function noopContentTypeParser(
  _req: FastifyRequest,
  _payload: unknown,
  done: (err: null, body: undefined) => void,
): void {
  done(null, undefined);
}
