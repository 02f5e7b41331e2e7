import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { bearerInterceptors, type TransportOptions } from "./transport-options.js";

export * from "./index.js";

/**
 * A connect-web (fetch) transport for the browser: Connect or gRPC-Web. Browsers cannot speak
 * gRPC (no trailers, no HTTP/2 control from fetch), and fetch cannot send a request stream, so
 * client-streaming and bidi RPCs are not available here.
 *
 * @throws TypeError for protocol "grpc".
 */
export function createWebTransport(options: TransportOptions): Transport {
  const interceptors = bearerInterceptors(options);
  const useBinaryFormat = options.useBinaryFormat ?? true;
  switch (options.protocol ?? "connect") {
    case "grpc":
      throw new TypeError("browsers cannot speak gRPC; use connect or grpcweb");
    case "grpcweb":
      return createGrpcWebTransport({ baseUrl: options.baseUrl, useBinaryFormat, interceptors });
    case "connect":
      return createConnectTransport({ baseUrl: options.baseUrl, useBinaryFormat, interceptors });
  }
}
