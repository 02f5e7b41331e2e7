import type { DescMethod } from "@bufbuild/protobuf";
import { type ContextKey, type ContextValues, createContextKey } from "@connectrpc/connect";
import { rpcProtocolOf } from "./protocol.js";

/** The wire protocol of a call, as the `protocol` label of metrics and the access log. */
export type Protocol = "connect" | "grpc" | "grpcweb";

/** gRPC's method types, as go-grpc-prometheus names them in the `grpc_type` label. */
export type RpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/** The peer's address as `ip:port`, from the HTTP request (set by connect-fastify's contextValues). */
export const peerKey = createContextKey<string>("unknown", { description: "peer address" });

/**
 * A call's context values, as connect-es's `createContextValues` keeps them (each value an own
 * property under its key's symbol; an unset key reads as its default), with `get`, `set` and
 * `delete` on the prototype: connect-es's object literal makes three functions per call, which an
 * open stream keeps (bench/README.md, memory per idle stream).
 */
export class CallValues implements ContextValues {
  get<T>(key: ContextKey<T>): T {
    const values = this as unknown as Record<symbol, T>;
    return key.id in values ? (values[key.id] as T) : key.defaultValue;
  }

  set<T>(key: ContextKey<T>, value: T): this {
    (this as unknown as Record<symbol, T>)[key.id] = value;
    return this;
  }

  delete(key: ContextKey<unknown>): this {
    delete (this as unknown as Record<symbol, unknown>)[key.id];
    return this;
  }
}

/**
 * Which protocol a request speaks, as its metrics label: the one detector's answer
 * (rpc/protocol.ts), with gRPC-Web spelt `grpcweb` as connect-go and Prometheus dashboards do.
 */
export function protocolOf(contentType: string | null): Protocol {
  const protocol = rpcProtocolOf(contentType);
  return protocol === "grpc-web" ? "grpcweb" : protocol;
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

/** A socket, or the wrapper of one (node:http2's JSStreamSocket keeps the real one in `stream`). */
export interface PeerSocket {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  stream?: PeerSocket | undefined;
}

/**
 * The peer address of an HTTP/1.1 or HTTP/2 request. A session on a socket without a native
 * handle runs on a JSStreamSocket wrapper, which has no address of its own: the address is the
 * wrapped socket's.
 */
export function peerOfRequest(raw: {
  socket?: PeerSocket | null;
  stream?: { session?: { socket?: PeerSocket } | undefined };
}): string {
  const session = raw.stream?.session?.socket;
  const socket = session ?? raw.socket ?? {};
  return peerOf(socket.remoteAddress === undefined && socket.stream ? socket.stream : socket);
}
