import type {
  IncomingHttpHeaders,
  IncomingMessage,
  OutgoingHttpHeaders,
  ServerResponse,
} from "node:http";
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Stream } from "node:http2";
import { Code } from "@connectrpc/connect";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import { detectProtocol, type RpcProtocol } from "./protocol.js";

/** An answer that refuses a request before (or instead of) the router. */
export interface Refusal {
  /** The Connect / gRPC status code. */
  code: Code;
  /** A message for the caller: what limit or rule was met, never an internal detail. */
  message: string;
  /**
   * The HTTP status a Connect caller gets; default the code's own (Connect protocol spec, "Error
   * Codes": codeToHttpStatus). Set where HTTP semantics ask for a more precise one (405, 413,
   * 415, 431). gRPC and gRPC-Web callers always get 200 with the status in the headers.
   */
  httpStatus?: number;
  /** More response headers (`allow`, `retry-after`, …), lower-case names. */
  headers?: Record<string, string>;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * Percent-encodes a grpc-message value as the gRPC over HTTP/2 spec ("Status-Message") says:
 * the UTF-8 bytes outside 0x20–0x7E, and `%`, as `%XX`; every other character as it is. Callers
 * decode no more than that: a message encoded with encodeURIComponent (connect-es's way) reaches
 * a C-core caller as "Authorization%3A Bearer" (measured with python3-grpcio 1.51), and grpc-js,
 * which decodes with decodeURI, shows `;` as `%3B`.
 */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * Re-encodes the grpc-message trailer of every gRPC response written to `res` the spec's way
 * ({@link encodeGrpcMessage}): connect-es writes it with encodeURIComponent, which C-core
 * callers would see undecoded. Wraps `res.addTrailers`, where connect-node hands over the
 * trailers (gRPC over HTTP/2 and HTTP/1.1; gRPC-Web carries them in the body, read by
 * browsers with decodeURIComponent).
 */
export function respecGrpcMessages(res: AnyResponse): void {
  const addTrailers = res.addTrailers;
  res.addTrailers = function (this: AnyResponse, headers: OutgoingHttpHeaders) {
    addTrailers.call(this, respecGrpcMessage(headers));
  } as AnyResponse["addTrailers"];
}

/**
 * gRPC trailers whose grpc-message connect-es encoded (encodeURIComponent) re-encoded the spec's
 * way ({@link encodeGrpcMessage}): a copy when there is one, else `headers` itself. What
 * {@link respecGrpcMessages} does to a response, for a writer that sends its trailers itself (the
 * lean lane, edge/rpc/lean-lane.ts).
 */
export function respecGrpcMessage(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const message = headers["grpc-message"];
  if (typeof message !== "string") return headers;
  let text = message;
  try {
    text = decodeURIComponent(message);
  } catch {
    // not percent-encoded UTF-8: leave it as it came
  }
  return { ...headers, "grpc-message": encodeGrpcMessage(text) };
}

/** The Connect error body of a refusal: `{"code":"…","message":"…"}` (Connect protocol spec). */
export function connectErrorBody(code: Code, message: string): string {
  return JSON.stringify({ code: codeToString(code), message });
}

/**
 * Answers `req` with `refusal` in the caller's own protocol, told from its Content-Type:
 *
 * - gRPC and gRPC-Web: a trailers-only response, HTTP 200 with `grpc-status` and
 *   `grpc-message` in the headers and no body. Over HTTP/2 that is one HEADERS frame with
 *   END_STREAM, as the gRPC over HTTP/2 spec ("Responses": Trailers-Only) requires; gRPC clients
 *   (grpc-js, C-core, grpc-go) read nothing else as a status.
 * - Connect (and anything that is not gRPC): HTTP `httpStatus` with the Connect error body
 *   `{code, message}` as `application/json`.
 *
 * Does nothing when the response has already started. Returns the protocol it answered in.
 */
export function refuse(req: AnyRequest, res: AnyResponse, refusal: Refusal): RpcProtocol {
  const protocol = detectProtocol(req.headers["content-type"]).protocol;
  if (res.headersSent || res.writableEnded) return protocol;
  if (req.httpVersionMajor === 2) {
    // The compat API would send HEADERS, then an empty DATA frame with END_STREAM; gRPC
    // clients need the status and the end of stream in the one HEADERS frame.
    return refuseStream((res as Http2ServerResponse).stream, req.headers, refusal);
  }
  const extra = refusal.headers ?? {};
  if (protocol !== "connect") {
    (res as ServerResponse).writeHead(200, grpcRefusalHeaders(req.headers, refusal));
    res.end();
    return protocol;
  }
  const body = connectErrorBody(refusal.code, refusal.message);
  const status = refusal.httpStatus ?? codeToHttpStatus(refusal.code);
  (res as ServerResponse).writeHead(status, {
    ...extra,
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(body)),
  });
  res.end(body);
  return protocol;
}

export { Code };

/**
 * {@link refuse} on a node:http2 stream, from its request headers (the compat layer's request, or
 * the lean lane's raw stream: edge/rpc/lean-lane.ts): gRPC and gRPC-Web trailers-only, one
 * HEADERS frame with END_STREAM; Connect the error body with its HTTP status. Nothing once the
 * stream has answered or is gone. Returns the protocol it answered in.
 */
export function refuseStream(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  refusal: Refusal,
): RpcProtocol {
  const protocol = detectProtocol(headers["content-type"]).protocol;
  if (stream.destroyed || stream.headersSent) return protocol;
  if (protocol !== "connect") {
    stream.respond(
      { ":status": 200, ...grpcRefusalHeaders(headers, refusal) },
      { endStream: true },
    );
    return protocol;
  }
  const body = connectErrorBody(refusal.code, refusal.message);
  stream.respond({
    ":status": refusal.httpStatus ?? codeToHttpStatus(refusal.code),
    ...refusal.headers,
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(body)),
  });
  stream.end(body);
  return protocol;
}

/** A gRPC or gRPC-Web refusal's headers: the status and message in the head (trailers-only). */
function grpcRefusalHeaders(headers: IncomingHttpHeaders, refusal: Refusal): OutgoingHttpHeaders {
  const contentType = String(headers["content-type"]).split(";")[0]?.trim() ?? "";
  return {
    ...refusal.headers,
    "content-type": contentType,
    "grpc-status": String(refusal.code),
    "grpc-message": encodeGrpcMessage(refusal.message),
  };
}
