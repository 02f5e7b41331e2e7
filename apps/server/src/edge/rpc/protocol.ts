/**
 * The RPC protocol a request speaks, told from its Content-Type alone (gRPC over HTTP/2 spec,
 * "Requests"; gRPC-Web protocol, "Protocol differences"; Connect protocol spec): any
 * `application/grpc-web…` is gRPC-Web, any other `application/grpc…` gRPC, and everything else,
 * a GET included, Connect. This is the one detector every early refusal uses, so that a caller
 * is answered in its own protocol even before the router has seen the request.
 */
export type RpcProtocol = "grpc" | "grpc-web" | "connect";

export function rpcProtocolOf(contentType: string | null | undefined): RpcProtocol {
  if (contentType === null || contentType === undefined) return "connect";
  const type = contentType.trimStart().toLowerCase();
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  return "connect";
}
