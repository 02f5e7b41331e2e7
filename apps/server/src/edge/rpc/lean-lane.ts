import type { OutgoingHttpHeaders } from "node:http";
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { ContextValues } from "@connectrpc/connect";
import * as grpc from "@connectrpc/connect/protocol-grpc";
import type { LeanHead, StreamServedHandler } from "./lean-stream.js";
import { detectProtocol, type Wire } from "./protocol.js";

/**
 * What the lean lane needs from the composition root (app.ts): what connect-fastify's route and
 * Fastify's hooks would have given the call on the other lane.
 */
export interface LeanLaneDeps {
  /**
   * A call's context values (its peer, its request id) from its stream and request headers: the
   * same values as connect-fastify's `contextValues` option sets for the other lane.
   */
  contextValues(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): ContextValues;
  /**
   * Headers every answer carries besides the call's own, from the request's headers: what
   * Fastify's onRequest hooks set on the reply (CORS). Undefined: none.
   */
  responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders | undefined;
}

/**
 * **The lean lane**: the hot RPCs over gRPC on HTTP/2 (SubscribeMessages, SendMessage,
 * grpc.health.v1.Health/Check: app.ts gives it their handlers, routes.ts's `streamServed`),
 * served from node:http2's `stream` event, beneath node:http2's compat layer and Fastify's
 * per-request machinery. The transport (edge/transport/http-server.ts) asks it of every HTTP/2
 * stream, from the stream's headers alone, whether it takes the stream ({@link route}); every
 * stream it does not take goes to the compat layer and Fastify unchanged.
 *
 * It takes a stream when its `:method` is POST, its `:path` is exactly one of its RPCs' paths, its
 * content type is gRPC (`application/grpc`, `+proto` or `+json`) and its `grpc-encoding` is absent
 * or identity, and it has no `Expect` header. Everything else (gRPC-Web, Connect, compressed
 * bodies, unknown content types, another HTTP method, a query string, HTTP/1.1) stays on Fastify's
 * routes, where rpc-gate.ts, connect-es and the other handlers answer it.
 *
 * What still applies to a stream it takes, exactly as on the other lane:
 * - the transport's defences (edge/transport/http-server.ts `dispatchStreams`): the turn
 *   scheduler, a stream reset before its turn skipped, connection caps, the header-size cap, the
 *   early-answer log and the delayed end of an unread body, the session owner's rapid-reset
 *   budget, keepalive, idle and shutdown GOAWAY;
 * - the call: the handler's own `serveStream` (edge/rpc/unary-handler.ts,
 *   edge/rpc/subscribe-handler.ts) builds the call context with the one builder (`callContext` in
 *   edge/rpc/wire.ts: grpc-timeout, MAX_TIMEOUT_MS, cancel, shutdown) and runs the router's
 *   interceptors (auth, limits, validation, the access log, metrics, the error mapper), with the
 *   context values of {@link LeanLaneDeps.contextValues} (peer, request id: edge/rpc/request-id.ts);
 * - the answer: the same frames, headers (CORS from {@link LeanLaneDeps.responseHeaders}) and
 *   trailers (grpc-message encoded the spec's way, as rpc-gate.ts arranges on the other lane):
 *   test/lanes-differential.test.ts compares both lanes.
 *
 * What it saves per call: node:http2's Http2ServerRequest and Http2ServerResponse, Fastify's
 * Request, Reply and child logger, its routing and hooks (bench/README.md, "What stands in the
 * way of the remaining targets").
 */
export class LeanLane {
  private readonly servers = new Map<string, LeanServers>();

  constructor(private readonly deps: LeanLaneDeps) {}

  /** Adds handlers to the lane (each serves its `requestPath`). */
  serve(handlers: readonly StreamServedHandler[]): void {
    for (const handler of handlers) {
      this.servers.set(handler.requestPath, new LeanServers(handler, this.deps));
    }
  }

  /** Paths the lane serves. */
  get paths(): string[] {
    return [...this.servers.keys()];
  }

  /**
   * The lane's server for a stream with these request headers, or undefined when the lane leaves
   * it to the compat layer and Fastify (see the class's rule). The transport's `StreamLane`.
   */
  route(headers: IncomingHttpHeaders): LeanServer | undefined {
    const path = headers[":path"];
    if (path === undefined) return undefined;
    const servers = this.servers.get(path);
    if (servers === undefined) return undefined;
    if (headers[":method"] !== "POST" || headers.expect !== undefined) return undefined;
    const contentType = headers["content-type"];
    const wire = detectProtocol(contentType, "POST").wire;
    if (wire === undefined || wire.protocol !== "grpc" || wire.text) return undefined;
    // Node's header names are lower case; connect-es's constant is capitalised (`Grpc-Encoding`).
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return undefined;
    return wire.binary ? servers.binary : servers.json;
  }
}

// The one detector's wires for gRPC's two codecs (shared constants).
const GRPC_PROTO = detectProtocol(grpc.contentTypeProto, "POST").wire as Wire;
const GRPC_JSON = detectProtocol(grpc.contentTypeJson, "POST").wire as Wire;

/** A lean RPC's servers, one per codec (made once, so that routing a stream allocates nothing). */
class LeanServers {
  readonly binary: LeanServer;
  readonly json: LeanServer;

  constructor(handler: StreamServedHandler, deps: LeanLaneDeps) {
    this.binary = new LeanServer(handler, deps, GRPC_PROTO);
    this.json = new LeanServer(handler, deps, GRPC_JSON);
  }
}

/** Serves one RPC in one codec on a raw stream: the transport's `StreamServer`. */
export class LeanServer {
  constructor(
    private readonly handler: StreamServedHandler,
    private readonly deps: LeanLaneDeps,
    private readonly wire: Wire,
  ) {}

  serveStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const head: LeanHead = {
      wire: this.wire,
      values: this.deps.contextValues(stream, headers),
      extra: this.deps.responseHeaders(headers),
    };
    this.handler.serveStream(stream, headers, head);
  }
}
