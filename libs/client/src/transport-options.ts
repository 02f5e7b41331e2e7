import type { Interceptor } from "@connectrpc/connect";

/** The three protocols a Switchboard server speaks on its one port. */
export type Protocol = "connect" | "grpc" | "grpcweb";

export const PROTOCOLS: readonly Protocol[] = ["connect", "grpc", "grpcweb"];

/** How a client reaches the server. */
export interface TransportOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** Default `connect`. */
  protocol?: Protocol;
  /**
   * HTTP version (Node only; browsers choose for themselves). gRPC always uses HTTP/2; Connect
   * and gRPC-Web default to HTTP/1.1. Over plain http:// HTTP/2 is h2c with prior knowledge.
   */
  httpVersion?: "1.1" | "2";
  /** Protobuf binary instead of JSON (Connect and gRPC-Web; gRPC is always binary). Default true. */
  useBinaryFormat?: boolean;
  /** Bearer token sent as `Authorization: Bearer <token>` on every call. */
  token?: string;
  /** More interceptors, run after the token interceptor. */
  interceptors?: Interceptor[];
}

/** Adds `Authorization: Bearer <token>` to every request when a token is set. */
export function bearerInterceptors(options: TransportOptions): Interceptor[] {
  const extra = options.interceptors ?? [];
  const token = options.token;
  if (token === undefined || token === "") return extra;
  const auth: Interceptor = (next) => (req) => {
    req.header.set("Authorization", `Bearer ${token}`);
    return next(req);
  };
  return [auth, ...extra];
}

/** Parses a protocol name; throws a TypeError naming the accepted values otherwise. */
export function parseProtocol(value: string): Protocol {
  if ((PROTOCOLS as readonly string[]).includes(value)) return value as Protocol;
  throw new TypeError(`protocol must be one of ${PROTOCOLS.join(", ")}; got "${value}"`);
}
