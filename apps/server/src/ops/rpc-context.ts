import type { DescMethod } from "@bufbuild/protobuf";
import { createContextKey } from "@connectrpc/connect";

/** The wire protocol of a call, as the `protocol` label of metrics and the access log. */
export type Protocol = "connect" | "grpc" | "grpcweb";

/** gRPC's method types, as go-grpc-prometheus names them in the `grpc_type` label. */
export type RpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/** The peer's address as `ip:port`, from the HTTP request (set by connect-fastify's contextValues). */
export const peerKey = createContextKey<string>("unknown", { description: "peer address" });

/**
 * Which protocol a request speaks, from its Content-Type: `application/grpc-web…` is gRPC-Web,
 * `application/grpc…` gRPC, anything else (JSON, proto, `connect+…`, a GET) Connect.
 */
export function protocolOf(contentType: string | null): Protocol {
  if (contentType === null) return "connect";
  if (contentType.startsWith("application/grpc-web")) return "grpcweb";
  if (contentType.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/** The `grpc_type` label of a method. */
export function rpcTypeOf(method: DescMethod): RpcType {
  switch (method.methodKind) {
    case "unary":
      return "unary";
    case "client_streaming":
      return "client_stream";
    case "server_streaming":
      return "server_stream";
    default:
      return "bidi_stream";
  }
}

/** A socket's remote address as `ip:port` (`[ip6]:port`), for the access log and limits. */
export function peerOf(socket: {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
}): string {
  const { remoteAddress, remotePort } = socket;
  if (remoteAddress === undefined) return "unknown";
  const host = remoteAddress.includes(":") ? `[${remoteAddress}]` : remoteAddress;
  return remotePort === undefined ? host : `${host}:${remotePort}`;
}
