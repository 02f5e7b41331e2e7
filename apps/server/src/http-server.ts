import { readFileSync } from "node:fs";
import http2 from "node:http2";
import type { Socket } from "node:net";
import * as httpolyglot from "@httptoolkit/httpolyglot";
import type { FastifyServerFactory } from "fastify";
import type { Config } from "./config.js";

/**
 * HTTP/2 settings chosen on purpose (shared/PERFORMANCE.md): Node's defaults are a 64 KiB stream
 * and connection window and 10 MB of session memory, which throttle fan-out to many streams on
 * one connection.
 */
const HTTP2_SETTINGS: http2.ServerOptions = {
  // 1 MiB per stream, so a burst to one subscriber does not stall on WINDOW_UPDATE round trips.
  settings: { initialWindowSize: 1 << 20, maxConcurrentStreams: 10_000 },
  // Room for many streams' queued frames per connection, in MB.
  maxSessionMemory: 64,
};

/** Connection-level receive window, bytes (set per session; not an HTTP/2 SETTING). */
const CONNECTION_WINDOW = 16 << 20;

/**
 * The one listening socket. Plaintext: HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c)
 * on the same port, told apart by the first bytes (@httptoolkit/httpolyglot). With TLS_CERT and
 * TLS_KEY: TLS with ALPN h2 and http/1.1 (node:http2's secure server with allowHTTP1).
 */
export function createServerFactory(
  config: Pick<Config, "tlsCert" | "tlsKey">,
): FastifyServerFactory {
  return (handler) => {
    let server: http2.Http2SecureServer | httpolyglot.Server;
    if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
      server = http2.createSecureServer(
        {
          ...HTTP2_SETTINGS,
          cert: readFileSync(config.tlsCert),
          key: readFileSync(config.tlsKey),
          allowHTTP1: true,
        },
        handler as never,
      );
    } else {
      server = httpolyglot.createServer({ http2: HTTP2_SETTINGS }, handler as never);
    }
    // httpolyglot's net.Server and node:http2's TLS server leave Nagle's algorithm on (unlike
    // node:http's servers). A gRPC answer is several small writes (HEADERS, DATA, trailers);
    // with Nagle the later ones wait for the client's delayed ACK: ~40 ms per unary call.
    server.on("connection", (socket: Socket) => socket.setNoDelay(true));
    server.on("session", (session: http2.Http2Session) => {
      session.setLocalWindowSize(CONNECTION_WINDOW);
    });
    return server as never;
  };
}
