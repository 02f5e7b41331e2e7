import { Code, ConnectError } from "@connectrpc/connect";

/** An error as a person should read it: a Connect code and a sentence that names the cause. */
export interface ErrorDescription {
  /** The code to report; Unavailable for a failure of the connection itself (as gRPC does). */
  code: Code;
  /** What happened, e.g. "server unavailable (connection refused)". */
  message: string;
  /** True when the server never answered: the connection failed, not the call. */
  network: boolean;
}

/** The `code` properties (Node's `ECONNREFUSED`, llhttp's `HPE_…`) along an error's `cause` chain. */
function causeCodes(err: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = err;
  for (let depth = 0; depth < 8 && typeof current === "object" && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
    current = (current as { cause?: unknown }).cause;
  }
  return codes;
}

const network = (message: string): ErrorDescription => ({
  code: Code.Unavailable,
  message,
  network: true,
});

/**
 * Reads a failed call's error as a cause instead of a transport's wording: connect-node reports
 * a refused connection as `unavailable: connect ECONNREFUSED …`, a port that runs another
 * service as `internal: write EPIPE` or `internal: Parse Error: Expected HTTP/`, an https:// URL
 * against a plain port as `aborted: Client network socket disconnected before secure TLS
 * connection was established`, a server killed mid-stream as `aborted: aborted` (HTTP/1.1) or
 * `canceled: http/2 stream closed with error code CANCEL` (HTTP/2); browsers' fetch reports any of
 * them as `unknown: Failed to fetch`. Each becomes code Unavailable (the connection failed, the
 * call may be retried) with a sentence such as "server unavailable (connection refused)".
 * Errors the server sent (a Connect error body, gRPC trailers) keep their code and message.
 *
 * `baseUrl`, when given, is named in the sentence ("server unavailable (connection refused at
 * http://127.0.0.1:8080)"); without it the sentence says "the server".
 * Browser-safe: it only reads the error's `code`, `message` and `cause` chain.
 */
export function describeError(err: unknown, baseUrl?: string): ErrorDescription {
  const error = ConnectError.from(err);
  const codes = causeCodes(error.cause);
  const raw = error.rawMessage;
  const where = baseUrl === undefined ? "the server" : baseUrl;
  const has = (...wanted: string[]) => codes.some((c) => wanted.includes(c));

  const at = baseUrl === undefined ? "" : ` at ${baseUrl}`;
  if (has("ECONNREFUSED")) return network(`server unavailable (connection refused${at})`);
  if (has("ENOTFOUND", "EAI_AGAIN")) return network(`server not found (unknown host name${at})`);
  if (has("ETIMEDOUT", "ENETUNREACH", "EHOSTUNREACH")) {
    return network(`server unreachable (no route or connection timed out${at})`);
  }
  if (/before secure TLS connection was established/.test(raw)) {
    const hint = baseUrl?.startsWith("https:") ? ` Try ${baseUrl.replace(/^https:/, "http:")}` : "";
    return network(
      `TLS handshake failed: ${where} closed the connection; is it serving plain http://?${hint}`,
    );
  }
  if (has("ERR_SSL_WRONG_VERSION_NUMBER", "ERR_SSL_PACKET_LENGTH_TOO_LONG", "EPROTO")) {
    return network(`TLS handshake failed with ${where}: ${raw}`);
  }
  if (
    has(
      "DEPTH_ZERO_SELF_SIGNED_CERT",
      "SELF_SIGNED_CERT_IN_CHAIN",
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    )
  ) {
    return network(`${where}'s TLS certificate is not trusted (${raw})`);
  }
  if (codes.some((c) => c.startsWith("HPE_")) || has("ERR_HTTP2_ERROR")) {
    return network(
      `${where} does not answer in HTTP (${raw}); is this the port of a Switchboard server?`,
    );
  }
  // The peer hung up on the request: EPIPE while writing it, ECONNRESET ("socket hang up")
  // before any answer. Redis does both on an HTTP request; so does a server that dies mid-call.
  if (has("EPIPE") || (has("ECONNRESET") && raw !== "aborted")) {
    return network(
      `${where} closed the connection without answering; is this the port of a Switchboard server?`,
    );
  }
  if (has("ECONNRESET")) return network("connection lost (the server went away mid-call)");
  if (error.code === Code.Canceled && /stream closed with error code/.test(raw)) {
    return network("connection lost (the server reset the HTTP/2 stream)");
  }
  // Browsers: fetch's TypeError, reported by connect-web as Unknown.
  if (
    error.code === Code.Unknown &&
    /Failed to fetch|NetworkError|Load failed|network error/i.test(raw)
  ) {
    return network(`server unreachable (${raw})`);
  }
  if (error.code === Code.Unimplemented && /^HTTP 404$/.test(raw)) {
    return {
      code: error.code,
      message: `${where} answered HTTP 404: not a Switchboard server, or a different base path`,
      network: false,
    };
  }
  if (error.code === Code.Unavailable && /^server shutting down/.test(raw)) {
    return { code: error.code, message: "server shutting down", network: false };
  }
  return { code: error.code, message: raw, network: false };
}
