import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import http from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import http2 from "node:http2";
import type net from "node:net";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { Code } from "@connectrpc/connect";
import type { FastifyServerFactory } from "fastify";
import type { Config } from "../../config.js";
import { SETTINGS } from "../../settings.js";
import {
  ConnectionGuard,
  type GuardLogger,
  type RefusalAnswers,
  type TransportRefusal,
} from "./connection-guard.js";
import { Http2Sessions } from "./http2-sessions.js";
import { ProtocolSniffer } from "./protocol-sniffer.js";
import { TurnScheduler } from "./turn-scheduler.js";

/**
 * HTTP/2 settings chosen on purpose: Node's defaults are a 64 KiB stream
 * and connection window and 10 MB of session memory, which throttle fan-out to many streams on
 * one connection. The abuse bounds are node:http2's own: a header list of at most
 * {@link maxHeaderPairs} fields, and a session that sends more than
 * {@link MAX_SESSION_INVALID_FRAMES} invalid frames or opens more than
 * {@link MAX_SESSION_REJECTED_STREAMS} streams over its limits is closed.
 */
function http2Settings(maxHeaderBytes: number): http2.ServerOptions {
  // node:http2 resets (ENHANCE_YOUR_CALM, no answer) a header block over the advertised
  // SETTINGS_MAX_HEADER_LIST_SIZE once the peer has acknowledged it. Advertising twice
  // MAX_HEADER_BYTES leaves the blocks between the two to limitHeaders' answer (431, or
  // resource_exhausted), as RFC 9113 §10.5.1 has it; only a block over twice the cap is reset.
  const listSize = 2 * maxHeaderBytes;
  return {
    settings: {
      // 1 MiB per stream, so a burst to one subscriber does not stall on WINDOW_UPDATE round trips.
      initialWindowSize: 1 << 20,
      maxConcurrentStreams: 10_000,
      maxHeaderListSize: listSize,
    },
    maxHeaderListPairs: maxHeaderPairs(listSize),
    maxSessionInvalidFrames: MAX_SESSION_INVALID_FRAMES,
    maxSessionRejectedStreams: MAX_SESSION_REJECTED_STREAMS,
    // Room for many streams' queued frames per connection, in MB.
    maxSessionMemory: 64,
  };
}

/** Invalid frames (bad padding, frames on closed streams, …) a session may send, in total. */
const MAX_SESSION_INVALID_FRAMES = 100;
/** Streams a session may open past its limits (refused with RST_STREAM), in total. */
const MAX_SESSION_REJECTED_STREAMS = 100;

/**
 * The most header fields a header block of `listBytes` can hold, so that node:http2's count cap
 * (maxHeaderListPairs, default 128: beyond it a stream is reset with ENHANCE_YOUR_CALM and no
 * answer) is never the one a peer meets before the byte cap: a field costs at least 32 bytes plus
 * a one-byte name in HPACK's accounting (RFC 7541 §4.1), and the pseudo-headers come on top. At
 * least 256.
 */
export function maxHeaderPairs(listBytes: number): number {
  return Math.max(256, Math.ceil(listBytes / 33) + 8);
}

type RequestHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

/**
 * A request's header block in bytes as HPACK counts it (RFC 7541 §4.1: name + value + 32), from
 * its raw header list (names and values in turn, pseudo-headers included).
 */
function headerBytes(raw: readonly string[]): number {
  let bytes = 0;
  for (let i = 0; i < raw.length; i += 2) {
    bytes += (raw[i] as string).length + (raw[i + 1] as string).length + 32;
  }
  return bytes;
}

/**
 * The refusal of an HTTP/2 header block over MAX_HEADER_BYTES (`resource_exhausted`, HTTP 431),
 * from its raw header list; undefined when it fits. Both lanes ask it (guardRequests, the stream
 * dispatch), so both answer alike.
 */
function headerBlockRefusal(
  raw: readonly string[],
  maxBytes: number,
): TransportRefusal | undefined {
  const bytes = headerBytes(raw);
  if (bytes <= maxBytes) return undefined;
  return {
    code: Code.ResourceExhausted,
    message: `request headers are ${bytes} bytes, over ${SETTINGS.maxHeaderBytes.env} (${maxBytes})`,
    httpStatus: 431,
  };
}

/**
 * What every request meets before Fastify:
 * - on a connection over a connection cap, its refusal ({@link ConnectionGuard.refusalFor});
 * - over HTTP/2, a header block larger than `maxBytes` (nghttp2 only advertises
 *   SETTINGS_MAX_HEADER_LIST_SIZE, it does not enforce it): `resource_exhausted`, HTTP 431 for
 *   Connect callers, trailers-only for gRPC and gRPC-Web (HTTP/1.1 is capped by node:http's
 *   maxHeaderSize, whose 431 is answered by {@link ConnectionGuard.answerClientError});
 * - an answer before the end of the request body is logged, and ends an HTTP/2 stream only
 *   after the answer ({@link ConnectionGuard.watchRequestBody}).
 *
 * HTTP/2 requests reach Fastify through `turns`: a few milliseconds of them per event-loop turn,
 * one per connection in turn ({@link TurnScheduler}).
 */
function guardRequests(
  handler: RequestHandler,
  guard: ConnectionGuard,
  answers: RefusalAnswers,
  maxBytes: number,
  turns: TurnScheduler,
): RequestHandler {
  const guarded: RequestHandler = (req, res) => {
    // Reset by the peer before it got here (rapid reset, CVE-2023-44487): nothing to answer,
    // and routing it would cost the event loop for nothing.
    if (req.httpVersionMajor === 2) {
      const stream = (req as Http2ServerRequest).stream;
      if (stream.closed || stream.destroyed) return;
    }
    const refusal = guard.refusalFor(req);
    if (refusal !== undefined) {
      guard.refuseRequest(req, res, refusal);
      return;
    }
    if (req.httpVersionMajor === 2) {
      const tooLarge = headerBlockRefusal(req.rawHeaders, maxBytes);
      if (tooLarge !== undefined) {
        answers.refuse(req, res, tooLarge);
        return;
      }
    }
    guard.watchRequestBody(req, res);
    handler(req, res);
  };
  return (req, res) => {
    if (req.httpVersionMajor !== 2) {
      guarded(req, res);
      return;
    }
    // On h2c's native socket node:http2 hands each stream over as soon as nghttp2 has parsed its
    // HEADERS, before the rest of the same network read (a rapid-reset burst's RST_STREAM frames)
    // is parsed: served at once, every stream of a burst would be routed and answered before its
    // reset is seen (a profile showed each one parsed and refused: 2–3× the event-loop stall
    // per burst). Deferred to the check phase, the streams of one read are all parsed first, as
    // they were on httpolyglot's JSStreamSocket, and a reset one is skipped above. The turns
    // scheduler runs them in fair slices per event-loop turn, a burst's too.
    const stream = (req as Http2ServerRequest).stream;
    turns.defer(stream.session ?? stream, () => guarded(req, res));
  };
}

/**
 * A lane beneath Fastify for some HTTP/2 streams (app.ts gives the lean lane,
 * edge/rpc/lean-lane.ts): it decides from a stream's headers alone whether it serves the stream,
 * and then serves it from node:http2's `stream` event, the raw `ServerHttp2Stream` and header
 * object, without node:http2's compat request and response or Fastify. The transport knows no
 * RPC: which paths and content types a lane takes is the lane's business.
 */
export interface StreamLane {
  /**
   * The server of a stream with these request headers, or undefined: the stream goes to
   * node:http2's compat layer and Fastify, as if there were no lane. Called for every HTTP/2
   * stream, synchronously: it reads the headers and nothing else.
   */
  route(headers: http2.IncomingHttpHeaders): StreamServer | undefined;
}

/** Serves one HTTP/2 stream a {@link StreamLane} took, with its request headers. */
export interface StreamServer {
  serveStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void;
}

/** node:http2's server `stream` listener: (stream, headers, flags, raw header list). */
type StreamListener = (
  this: unknown,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  flags: number,
  rawHeaders: string[],
) => void;

/**
 * Puts `lane` in front of node:http2's compat layer on `server`. node:http2 installs the compat
 * layer as the server's own `stream` listener (`onServerStream`, which makes an
 * Http2ServerRequest and Http2ServerResponse and emits `request`) when a `request` listener is
 * added; here that listener is taken off and called by a dispatch for every stream the lane does
 * not take, so those reach Fastify exactly as before. A stream the lane takes meets what
 * {@link guardRequests} applies to every request, in the same order and through the same turns:
 * a stream reset before its turn is skipped; on a connection over a cap, the guard's refusal and
 * GOAWAY; a header block over `maxBytes`, `resource_exhausted`; an answer before the end of the
 * request body is logged and ends the stream after the answer ({@link
 * ConnectionGuard.watchStreamBody}). The session's own `stream` listener (rapid-reset counting,
 * idle: edge/transport/http2-sessions.ts) runs before either lane.
 */
function dispatchStreams(
  server: http2.Http2Server | http2.Http2SecureServer,
  lane: StreamLane,
  guard: ConnectionGuard,
  answers: RefusalAnswers,
  maxBytes: number,
  turns: TurnScheduler,
): void {
  const compat = server.listeners("stream") as StreamListener[];
  if (compat.length !== 1) {
    throw new Error(
      `node:http2's compat layer is no longer the server's one stream listener (${compat.length} listeners): the lean lane cannot be put in front of it`,
    );
  }
  const toCompat = compat[0] as StreamListener;
  server.removeListener("stream", toCompat);
  server.on("stream", function (this: unknown, stream, headers, flags, rawHeaders) {
    const target = lane.route(headers);
    if (target === undefined) {
      toCompat.call(this, stream, headers, flags, rawHeaders);
      return;
    }
    // Reset by the peer before it got here (rapid reset): nothing to answer (guardRequests).
    if (stream.closed || stream.destroyed) return;
    turns.defer(stream.session ?? stream, () => {
      if (stream.closed || stream.destroyed) return;
      const refusal = guard.refusalForStream(stream);
      if (refusal !== undefined) {
        guard.refuseStream(stream, headers, refusal);
        return;
      }
      const tooLarge = headerBlockRefusal(rawHeaders, maxBytes);
      if (tooLarge !== undefined) {
        answers.refuseStream(stream, headers, tooLarge);
        return;
      }
      guard.watchStreamBody(stream, headers);
      target.serveStream(stream, headers);
    });
  } as StreamListener);
}

/**
 * HTTP/1.1 header deadline and keep-alive idle timeout on node:http's server. node:http checks
 * `headersTimeout` in a timer started when the server listens; the protocol sniffer's inner
 * http.Server never listens, so that timer is started here, from node:http's own listener
 * (setupConnectionsTracking), at a period of a tenth of the deadline (at most 1 s) instead of
 * 30 s. A late header block is then node:http's `clientError` ERR_HTTP_REQUEST_TIMEOUT, and an
 * idle kept-alive socket the server's `timeout` event; the connection guard judges both once the
 * server has read what arrived (408, or the close; edge/transport/peer-deadline.ts). The
 * request body has no deadline (client streams may be long); READ_MAX_BYTES and the connection
 * caps bound it. Returns a function that stops the timer.
 */
function driveHttp1Timeouts(
  server: http.Server,
  headersTimeoutMs: number,
  idleTimeoutMs: number,
  listening: boolean,
): () => void {
  server.headersTimeout = headersTimeoutMs;
  server.requestTimeout = 0;
  server.keepAliveTimeout = idleTimeoutMs;
  // Not in @types/node; node:http reads it when its checking timer starts.
  (server as http.Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval =
    Math.max(50, Math.min(1_000, headersTimeoutMs / 10));
  if (listening) return () => {};
  const setup = server
    .listeners("listening")
    .find((listener) => listener.name === "setupConnectionsTracking");
  if (setup === undefined) {
    throw new Error(
      "node:http no longer has setupConnectionsTracking: HTTP/1.1 header deadlines would not run",
    );
  }
  (setup as (this: http.Server) => void).call(server);
  const interval = Object.getOwnPropertySymbols(server).find(
    (symbol) => symbol.description === "http.server.connectionsCheckingInterval",
  );
  return () => {
    if (interval !== undefined) {
      clearInterval((server as unknown as Record<symbol, NodeJS.Timeout>)[interval]);
    }
  };
}

/** node:tls's handshake timeout, in first-byte deadlines (a backstop behind the guard's). */
const TLS_HANDSHAKE_BACKSTOP = 10;

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

/** How often, during shutdown, HTTP/1.1 connections that have gone idle are closed, ms. */
const IDLE_SWEEP_MS = 100;

/**
 * At close (shutdown), marks every open connection as closed by shutdown and destroys the ones
 * whose protocol is not known yet: server.close() waits for every connection, and nothing else
 * ends those before the first-byte deadline. Also stops the HTTP/1.1 header-deadline timer, and
 * closes idle HTTP/1.1 keep-alive connections (`http1`'s `closeIdleConnections`), at once and
 * then every IDLE_SWEEP_MS until the server has closed: a kept-alive connection (fetch, an
 * agent with keepAlive) would otherwise hold server.close() until HTTP1_IDLE_TIMEOUT_MS, past
 * SHUTDOWN_TIMEOUT_MS, and so would one whose request was in flight at close and that goes idle
 * after its answer (node:http's own close sweeps once, and the sniffer's HTTP/1.1 server never
 * listens, so nothing swept it at all).
 */
function closeSilentConnectionsOnClose(
  server: net.Server,
  guard: ConnectionGuard,
  stopTimers: () => void,
  http1: http.Server,
): void {
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  // node:http2's secure server (allowHTTP1) tracks its HTTP/1.1 connections as node:http does
  // but has no closeIdleConnections method of its own.
  const closeIdle = () => http.Server.prototype.closeIdleConnections.call(http1);
  const close = server.close.bind(server);
  server.close = (callback?: (err?: Error) => void) => {
    stopTimers();
    guard.markAllClosing("shutdown");
    for (const socket of sockets) if (socket.bytesRead === 0) socket.destroy();
    closeIdle();
    const sweep = setInterval(closeIdle, IDLE_SWEEP_MS);
    sweep.unref();
    server.once("close", () => clearInterval(sweep));
    return close(callback);
  };
}

/** The settings the one-port server reads. */
export type ServerFactoryConfig = Pick<
  Config,
  | "tlsCert"
  | "tlsKey"
  | "maxHeaderBytes"
  | "readMaxBytes"
  | "firstByteTimeoutMs"
  | "http1HeadersTimeoutMs"
  | "http1IdleTimeoutMs"
  | "maxConnections"
  | "maxConnectionsPerIp"
  | "http2ResetBurst"
  | "http2ResetRatePerS"
  | "http2KeepaliveMs"
  | "http2KeepaliveTimeoutMs"
  | "idleTimeoutMs"
>;

/** The one-port server's transport, made once by the composition root (app.ts). */
export interface Transport {
  /** Fastify's `serverFactory`: the listening server (call it once). */
  serverFactory: FastifyServerFactory;
  /** Connection caps, deadlines and close reasons; its counts feed /metrics. */
  connections: ConnectionGuard;
  /** The owner of every HTTP/2 session: keepalive, idle, rapid reset, shutdown GOAWAY. */
  sessions: Http2Sessions;
}

/**
 * The one listening socket (`serverFactory`). Plaintext: HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c)
 * on the same port, told apart by the first bytes ({@link ProtocolSniffer}). With TLS_CERT and
 * TLS_KEY: TLS with ALPN h2 and http/1.1 (node:http2's secure server with allowHTTP1). Every
 * connection goes through a {@link ConnectionGuard} (deadlines, caps, rapid reset, close
 * reasons), and every HTTP/2 session is owned by one {@link Http2Sessions}; see README
 * "Security". Refusals, rapid resets and timeouts are logged to `logger`. With a `lane`, the
 * HTTP/2 streams it takes are served beneath node:http2's compat layer and Fastify
 * ({@link dispatchStreams}); the transport's defences apply to them as to every request.
 */
export function createTransport(
  config: ServerFactoryConfig,
  answers: RefusalAnswers,
  logger?: GuardLogger,
  lane?: StreamLane,
): Transport {
  const HTTP2_SETTINGS = http2Settings(config.maxHeaderBytes);
  const guard = new ConnectionGuard(
    {
      firstByteTimeoutMs: config.firstByteTimeoutMs,
      http1HeadersTimeoutMs: config.http1HeadersTimeoutMs,
      maxHeaderBytes: config.maxHeaderBytes,
      readMaxBytes: config.readMaxBytes,
      maxConnections: config.maxConnections,
      maxConnectionsPerIp: config.maxConnectionsPerIp,
      http2ResetBurst: config.http2ResetBurst,
      http2ResetRatePerS: config.http2ResetRatePerS,
    },
    answers,
  );
  if (logger !== undefined) guard.attachLogger(logger);
  const sessions = new Http2Sessions(config, guard);
  const serverFactory: FastifyServerFactory = (fastifyHandler) => {
    // One scheduler for the server's deferred work: h2c session starts and HTTP/2 requests.
    const turns = new TurnScheduler();
    const handler = guardRequests(
      fastifyHandler as RequestHandler,
      guard,
      answers,
      config.maxHeaderBytes,
      turns,
    );
    let server: http2.Http2SecureServer | ProtocolSniffer;
    let stopTimers: () => void;
    let http1: http.Server;
    if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
      const secure = http2.createSecureServer(
        {
          ...HTTP2_SETTINGS,
          cert: readFileSync(config.tlsCert),
          key: readFileSync(config.tlsKey),
          allowHTTP1: true,
          // The guard's first-byte deadline closes a slow handshake (with its reason). node:tls's
          // own timer is only a backstop, far behind it: it is no PeerDeadline, and would close a
          // handshake whose bytes wait unread after a stall the guard gave a new period.
          handshakeTimeout: TLS_HANDSHAKE_BACKSTOP * config.firstByteTimeoutMs,
        },
        handler as never,
      );
      server = secure;
      http1 = secure as unknown as http.Server;
      if (lane !== undefined) {
        dispatchStreams(secure, lane, guard, answers, config.maxHeaderBytes, turns);
      }
      // node:http2's secure server runs HTTP/1.1 with node:http's listener and its timers.
      stopTimers = driveHttp1Timeouts(
        secure as unknown as http.Server,
        config.http1HeadersTimeoutMs,
        config.http1IdleTimeoutMs,
        true,
      );
      secure.prependListener("connection", (socket: Socket) => guard.accept(socket, true));
      // Before Fastify's own clientError handler (registered after this factory returns).
      secure.on("clientError", guard.answerClientError as never);
      // HTTP/1.1 keep-alive timeouts (no session sets a timeout, so only sockets come here).
      secure.on("timeout", guard.closeIdle as never);
      secure.on("secureConnection", (socket: TLSSocket) => {
        guard.identified(socket);
        if (socket.alpnProtocol === "h2") closeAfterSession(socket);
      });
    } else {
      const sniffer = new ProtocolSniffer(
        {
          http2: HTTP2_SETTINGS,
          http1: { maxHeaderSize: config.maxHeaderBytes },
          startSession: (start) => turns.start(start),
        },
        handler,
      );
      server = sniffer;
      http1 = sniffer.http1;
      if (lane !== undefined) {
        dispatchStreams(sniffer.http2, lane, guard, answers, config.maxHeaderBytes, turns);
      }
      stopTimers = driveHttp1Timeouts(
        sniffer.http1,
        config.http1HeadersTimeoutMs,
        config.http1IdleTimeoutMs,
        false,
      );
      // First in line, so a connection is counted before the sniffer reads it.
      sniffer.prependListener("connection", (socket: Socket) => guard.accept(socket, false));
      sniffer.on("protocol", (socket: Socket, protocol: string) => {
        // TLS on the plain port: the sniffer closes it; /metrics counts it as a bad request.
        if (protocol === "tls") guard.markClosing(socket, "bad_request");
        guard.identified(socket);
        // An h2c session runs on the TCP socket itself: it ends it, the peer closes its half.
        if (protocol === "h2c") closeAfterSession(socket);
      });
      sniffer.on("clientError", guard.answerClientError as never);
      // On the HTTP/1.1 server only: the sniffer would add it to the HTTP/2 server too.
      sniffer.http1.on("timeout", guard.closeIdle);
    }
    // A plain net.Server and node:http2's TLS server leave Nagle's algorithm on (unlike
    // node:http's servers). A gRPC answer is several small writes (HEADERS, DATA, trailers);
    // with Nagle the later ones wait for the client's delayed ACK: ~40 ms per unary call.
    server.on("connection", (socket: Socket) => {
      socket.setNoDelay(true);
      turns.accepted();
    });
    closeSilentConnectionsOnClose(server, guard, stopTimers, http1);
    // The server's one `session` listener: the sessions' owner.
    server.on("session", sessions.watch);
    return server as never;
  };
  return { serverFactory, connections: guard, sessions };
}
