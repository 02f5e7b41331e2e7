import type { OutgoingHttpHeaders } from "node:http";
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { ContextValues } from "@connectrpc/connect";
import { respecGrpcMessage } from "./refusal.js";
import type { Wire } from "./wire.js";

// A call of the lean lane (edge/rpc/lean-lane.ts) on a raw node:http2 stream: what its handler is
// given, and the few writes node:http2's compat response would have made for it, made on the
// stream itself, so that a peer sees the same frames, headers and trailers from either lane.

/** What the lean lane gives a handler with a stream: read once from the request's headers. */
export interface LeanHead {
  /** The call's protocol and codec (gRPC, proto or JSON, uncompressed: the lane's rule). */
  readonly wire: Wire;
  /** The call's context values (peer, request id), as connect-fastify's route would set them. */
  readonly values: ContextValues;
  /**
   * Headers every answer carries besides the call's own (CORS), as Fastify's hooks set them on
   * the reply of the other lane; the call's own win on a clash. Undefined: none.
   */
  readonly extra: OutgoingHttpHeaders | undefined;
}

/** A handler the lean lane can give a raw HTTP/2 stream (a gRPC call, see {@link LeanHead}). */
export interface StreamServedHandler {
  /** The RPC's path, `/package.Service/Method`. */
  readonly requestPath: string;
  /** Serves the call on `stream`; never throws (every error is the call's answer). */
  serveStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, head: LeanHead): void;
}

/** The request's URL as node:http2's compat request gives it (scheme, authority, path). */
export function streamUrl(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): string {
  const encrypted = stream.session?.encrypted === true;
  const authority = headers[":authority"] ?? headers.host;
  return `${encrypted ? "https" : "http"}://${authority ?? "localhost"}${headers[":path"] ?? ""}`;
}

/** Whether the answer can still be written to `stream`. */
export function streamWritable(stream: ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed && !stream.writableEnded;
}

/**
 * Sends the response head, as the compat response's `writeHead` does: HEADERS with `:status` and
 * `date` (node:http2 adds it), and the trailers to follow (`waitForTrailers`: the body's last DATA
 * frame does not end the stream; {@link endWithTrailers} does).
 */
export function respondHead(
  stream: ServerHttp2Stream,
  status: number,
  headers: Headers,
  extra: OutgoingHttpHeaders | undefined,
): void {
  const out: OutgoingHttpHeaders = { ...extra };
  for (const [key, value] of headers) {
    out[key] = key === "set-cookie" ? headers.getSetCookie() : value;
  }
  out[":status"] = status;
  stream.respond(out, { waitForTrailers: true });
}

/**
 * Ends the stream with gRPC trailers (`trailer`, grpc-message encoded the spec's way), or with
 * no trailers at all (undefined: what the compat response sends without any): the compat
 * response's `addTrailers` and `end`.
 */
export function endWithTrailers(stream: ServerHttp2Stream, trailer: Headers | undefined): void {
  stream.once("wantTrailers", () => {
    if (stream.destroyed || stream.closed) return;
    const out: OutgoingHttpHeaders = {};
    if (trailer !== undefined) for (const [key, value] of trailer) out[key] = value;
    stream.sendTrailers(respecGrpcMessage(out));
  });
  stream.end();
}
