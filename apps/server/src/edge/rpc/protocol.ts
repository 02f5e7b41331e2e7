import * as connect from "@connectrpc/connect/protocol-connect";
import * as grpc from "@connectrpc/connect/protocol-grpc";
import * as grpcWeb from "@connectrpc/connect/protocol-grpc-web";

/** The three RPC protocols on the one port. */
export type RpcProtocol = "grpc" | "grpc-web" | "connect";

/** A protocol and codec a request speaks. */
export interface Wire {
  readonly protocol: RpcProtocol;
  /** Protobuf's binary encoding (`+proto`, `application/proto`); false: its JSON mapping. */
  readonly binary: boolean;
}

/** A {@link Wire} with its framing, as {@link detectProtocol} reads it from a content type. */
export interface WireFormat extends Wire {
  /** gRPC-Web's text (base64) variant, `application/grpc-web-text`. */
  readonly text: boolean;
  /**
   * Enveloped messages (length-prefixed): every gRPC and gRPC-Web call, and Connect's streaming
   * content types (`application/connect+…`); false: a Connect unary body.
   */
  readonly stream: boolean;
}

/** What {@link detectProtocol} reads of a request. Each answer is a shared constant. */
export interface DetectedProtocol {
  /** The protocol to answer in: never undefined, so that any caller is refused in its own. */
  readonly protocol: RpcProtocol;
  /**
   * The codec and framing, when the request is a POST whose content type is one connect-es's
   * parsers take exactly; undefined for anything else (a GET, a malformed or unknown content
   * type: connect-es's own handler answers or refuses it).
   */
  readonly wire: WireFormat | undefined;
}

function detected(protocol: RpcProtocol): {
  none: DetectedProtocol;
  of(binary: boolean, text: boolean, stream: boolean): DetectedProtocol;
} {
  const table = new Map<number, DetectedProtocol>();
  for (let bits = 0; bits < 8; bits++) {
    const wire = {
      protocol,
      binary: (bits & 1) !== 0,
      text: (bits & 2) !== 0,
      stream: (bits & 4) !== 0,
    };
    table.set(bits, Object.freeze({ protocol, wire: Object.freeze(wire) }));
  }
  return {
    none: Object.freeze({ protocol, wire: undefined }),
    of: (binary, text, stream) =>
      table.get((binary ? 1 : 0) | (text ? 2 : 0) | (stream ? 4 : 0)) as DetectedProtocol,
  };
}

const GRPC = detected("grpc");
const GRPC_WEB = detected("grpc-web");
const CONNECT = detected("connect");

/** The protocol family of a content type: `application/grpc-web…`, else `application/grpc…`. */
const FAMILY = /^\s*application\/grpc(-web)?/i;

/**
 * The one protocol detector: the protocol, codec and framing a request speaks, from its
 * Content-Type and HTTP method (gRPC over HTTP/2 spec, "Requests"; gRPC-Web protocol, "Protocol
 * differences"; Connect protocol spec). The protocol is told by prefix, so that every early
 * refusal answers a caller in its own protocol even before the router has seen the request: any
 * `application/grpc-web…` is gRPC-Web, any other `application/grpc…` gRPC, and everything else,
 * a GET or no content type included, Connect. The {@link DetectedProtocol.wire} is exact:
 * connect-es's own content-type parsers, for a POST (`method` undefined: not checked).
 */
export function detectProtocol(
  contentType: string | null | undefined,
  method?: string,
): DetectedProtocol {
  if (contentType === null || contentType === undefined) return CONNECT.none;
  const family = FAMILY.exec(contentType);
  const post = method === undefined || method === "POST";
  if (family === null) {
    const c = post ? connect.parseContentType(contentType) : undefined;
    return c === undefined ? CONNECT.none : CONNECT.of(c.binary, false, c.stream);
  }
  if (family[1] !== undefined) {
    const w = post ? grpcWeb.parseContentType(contentType) : undefined;
    return w === undefined ? GRPC_WEB.none : GRPC_WEB.of(w.binary, w.text, true);
  }
  const g = post ? grpc.parseContentType(contentType) : undefined;
  return g === undefined ? GRPC.none : GRPC.of(g.binary, false, true);
}
