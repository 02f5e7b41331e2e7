import type { DescMethod } from "@bufbuild/protobuf";
import { type ContextKey, type ContextValues, createContextKey } from "@connectrpc/connect";
import { detectProtocol } from "./protocol.js";

/** The wire protocol of a call, as the `protocol` label of metrics and the access log. */
export type Protocol = "connect" | "grpc" | "grpcweb";

/** gRPC's method types, as go-grpc-prometheus names them in the `grpc_type` label. */
export type RpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/** The counts of one (service, method, type, protocol): plain numbers, read at scrape time. */
export interface RpcCell {
  readonly labels: {
    grpc_service: string;
    grpc_method: string;
    grpc_type: RpcType;
    protocol: Protocol;
  };
  started: number;
  /** Request messages received. */
  received: number;
  /** Response messages sent. */
  sent: number;
  /** Finished calls by gRPC code name ("OK", "InvalidArgument", …). */
  readonly handled: Map<string, number>;
}

/**
 * Where the observe interceptor counts calls (ops/metrics.ts's RpcMetrics, which /metrics reads):
 * one cell per (service, method, protocol), a start and an end per call.
 */
export interface CallMetrics {
  /** The counts of one method over one protocol. */
  cell(service: string, method: string, type: RpcType, protocol: Protocol): RpcCell;
  /** Records a call's start. */
  callStarted(cell: RpcCell): void;
  /** Records a call's end with its gRPC code name and duration in seconds. */
  callHandled(cell: RpcCell, code: string, seconds: number): void;
}

/** The peer's address as `ip:port`, from the HTTP request (set by connect-fastify's contextValues).
 * */
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
 * (edge/rpc/protocol.ts), with gRPC-Web spelt `grpcweb` as connect-go and Prometheus dashboards do.
 */
export function protocolOf(contentType: string | null): Protocol {
  const protocol = detectProtocol(contentType).protocol;
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
