import type { Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { traceContextInterceptor } from "./trace-context.js";
import { bearerInterceptors, type TransportOptions } from "./transport-options.js";

export * from "./index.js";
export { traceContextInterceptor } from "./trace-context.js";

/** Node-only transport settings. */
export interface NodeTransportOptions extends TransportOptions {
  /** PEM certificate(s) to trust for an https:// base URL, beside the system's (a private CA). */
  ca?: string | Buffer;
}

/**
 * A connect-node transport for Node programs (CLI, tests, scripts) in any of the three
 * protocols. gRPC always runs over HTTP/2; Connect and gRPC-Web use `httpVersion` (default 1.1).
 * Every call carries the caller's OpenTelemetry trace context when the program has
 * OpenTelemetry set up ({@link traceContextInterceptor}).
 */
export function createNodeTransport(options: NodeTransportOptions): Transport {
  const interceptors = [traceContextInterceptor, ...bearerInterceptors(options)];
  const nodeOptions = options.ca === undefined ? {} : { nodeOptions: { ca: options.ca } };
  const useBinaryFormat = options.useBinaryFormat ?? true;
  const httpVersion = options.httpVersion ?? "1.1";
  switch (options.protocol ?? "connect") {
    case "grpc":
      return createGrpcTransport({ baseUrl: options.baseUrl, interceptors, ...nodeOptions });
    case "grpcweb":
      return createGrpcWebTransport({
        baseUrl: options.baseUrl,
        httpVersion,
        useBinaryFormat,
        interceptors,
        ...nodeOptions,
      });
    case "connect":
      return createConnectTransport({
        baseUrl: options.baseUrl,
        httpVersion,
        useBinaryFormat,
        interceptors,
        ...nodeOptions,
      });
  }
}
