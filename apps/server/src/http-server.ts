import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import http2 from "node:http2";
import type net from "node:net";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import * as httpolyglot from "@httptoolkit/httpolyglot";
import type { FastifyServerFactory } from "fastify";
import type { Config } from "./config.js";

/**
 * HTTP/2 settings chosen on purpose (shared/PERFORMANCE.md): Node's defaults are a 64 KiB stream
 * and connection window and 10 MB of session memory, which throttle fan-out to many streams on
 * one connection.
 */
function http2Settings(maxHeaderBytes: number): http2.ServerOptions {
  return {
    settings: {
      // 1 MiB per stream, so a burst to one subscriber does not stall on WINDOW_UPDATE round trips.
      initialWindowSize: 1 << 20,
      maxConcurrentStreams: 10_000,
      // A header block over MAX_HEADER_BYTES is refused (nghttp2 enforces the advertised limit).
      maxHeaderListSize: maxHeaderBytes,
    },
    // Room for many streams' queued frames per connection, in MB.
    maxSessionMemory: 64,
  };
}

type RequestHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

/**
 * Refuses an HTTP/2 request whose header block is larger than `maxBytes` (counted as HPACK does,
 * RFC 7541 §4.1: name + value + 32 per field): nghttp2 only advertises SETTINGS_MAX_HEADER_LIST_SIZE,
 * it does not enforce it. gRPC callers get RESOURCE_EXHAUSTED in a trailers-only answer, others
 * 431. (HTTP/1.1 is capped by node:http's maxHeaderSize, which answers 431 itself.)
 */
function limitHeaders(handler: RequestHandler, maxBytes: number): RequestHandler {
  return (req, res) => {
    if (req.httpVersionMajor === 2) {
      let bytes = 0;
      const raw = req.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        bytes += (raw[i] as string).length + (raw[i + 1] as string).length + 32;
      }
      if (bytes > maxBytes) {
        const answer = res as Http2ServerResponse;
        const grpc = String(req.headers["content-type"] ?? "").startsWith("application/grpc");
        const message = encodeURIComponent(
          `request headers are ${bytes} bytes; the limit is ${maxBytes}`,
        );
        if (grpc) {
          answer.writeHead(200, {
            "content-type": String(req.headers["content-type"]).split(";")[0],
            "grpc-status": "8",
            "grpc-message": message,
          });
        } else {
          answer.writeHead(431);
        }
        answer.end();
        return;
      }
    }
    handler(req, res);
  };
}

/** Connection-level receive window, bytes (set per session; not an HTTP/2 SETTING). */
const CONNECTION_WINDOW = 16 << 20;

/** How long a peer may keep its half of an HTTP/2 connection open after the session, ms. */
const SESSION_LINGER_MS = 1_000;

/**
 * Once node:http2 has ended its half of a finished session's socket, the peer gets
 * SESSION_LINGER_MS to close its own; then the socket is destroyed. A client that never closes
 * (h2load keeps connections until its run ends; a client after GOAWAY) would otherwise hold the
 * socket, and server.close() at shutdown, for ever.
 */
function closeAfterSession(socket: Socket): void {
  socket.once("finish", () => {
    const timer = setTimeout(() => socket.destroy(), SESSION_LINGER_MS);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));
  });
}

/**
 * At close, destroys the connections whose peer has not sent a byte yet. Nothing else would end
 * them: httpolyglot waits for the first bytes to tell HTTP/1.1 from HTTP/2 without a timeout, and
 * a TLS server gives a handshake 120 s; until they end, server.close() (graceful shutdown) waits,
 * so one idle TCP connection (a load balancer's spare, a port probe) made shutdown time out.
 */
function closeSilentConnectionsOnClose(server: net.Server): void {
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const close = server.close.bind(server);
  server.close = (callback?: (err?: Error) => void) => {
    for (const socket of sockets) if (socket.bytesRead === 0) socket.destroy();
    return close(callback);
  };
}

/**
 * The one listening socket. Plaintext: HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c)
 * on the same port, told apart by the first bytes (@httptoolkit/httpolyglot). With TLS_CERT and
 * TLS_KEY: TLS with ALPN h2 and http/1.1 (node:http2's secure server with allowHTTP1).
 */
export function createServerFactory(
  config: Pick<Config, "tlsCert" | "tlsKey" | "maxHeaderBytes">,
): FastifyServerFactory {
  const HTTP2_SETTINGS = http2Settings(config.maxHeaderBytes);
  return (fastifyHandler) => {
    const handler = limitHeaders(fastifyHandler as RequestHandler, config.maxHeaderBytes);
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
      // h2c sockets are swept by ops.ts (they sit under a JSStreamSocket there).
      server.on("secureConnection", (socket: TLSSocket) => {
        if (socket.alpnProtocol === "h2") closeAfterSession(socket);
      });
    } else {
      server = httpolyglot.createServer(
        { http2: HTTP2_SETTINGS, http: { maxHeaderSize: config.maxHeaderBytes } },
        handler as never,
      );
    }
    // httpolyglot's net.Server and node:http2's TLS server leave Nagle's algorithm on (unlike
    // node:http's servers). A gRPC answer is several small writes (HEADERS, DATA, trailers);
    // with Nagle the later ones wait for the client's delayed ACK: ~40 ms per unary call.
    server.on("connection", (socket: Socket) => socket.setNoDelay(true));
    closeSilentConnectionsOnClose(server);
    server.on("session", (session: http2.Http2Session) => {
      session.setLocalWindowSize(CONNECTION_WINDOW);
    });
    return server as never;
  };
}
