import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

/** The client connection preface of cleartext HTTP/2 with prior knowledge (RFC 9113 §3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** The protocol {@link ProtocolSniffer} told from a connection's first bytes. */
export type SniffedProtocol = "http/1.1" | "h2c" | "tls";

/** The first byte of a TLS record of type handshake (a ClientHello: RFC 8446 §5.1). */
const TLS_HANDSHAKE = 0x16;

/** The inner servers' settings. */
export interface ProtocolSnifferOptions {
  /** node:http's server options for HTTP/1.1 connections (maxHeaderSize, …). */
  http1?: http.ServerOptions;
  /** node:http2's server options for h2c connections (settings, maxSessionMemory, …). */
  http2?: http2.ServerOptions;
  /**
   * Runs `start`, the start of an h2c session, now or later (default: now). node:http2
   * parses every frame read so far when the session starts: a connection that sent 100 requests
   * at once becomes 100 streams in one go, and 1,000 such connections read in one poll make one
   * event-loop turn of all of them. The server defers starts to its TurnScheduler.
   */
  startSession?: (start: () => void) => void;
}

/**
 * Events of the inner servers that a listener on the {@link ProtocolSniffer} is added to, as
 * httpolyglot does: `request` and `checkContinue` come from both, the rest from the one that emits
 * them. `connection`, `listening`, `close` and `error` stay the listening socket's own.
 */
const HTTP1_EVENTS = new Set([
  "request",
  "checkContinue",
  "checkExpectation",
  "clientError",
  "connect",
  "upgrade",
  "dropRequest",
  "timeout",
]);
const HTTP2_EVENTS = new Set([
  "request",
  "checkContinue",
  "session",
  "sessionError",
  "stream",
  "unknownProtocol",
  "timeout",
]);

/** Swallows a socket error while nobody else listens (a peer resetting before its first bytes). */
function ignoreError(): void {}

/**
 * One plaintext listening socket for HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge): a
 * `net.Server` whose connection listener reads the connection's first bytes, puts them back
 * (`socket.unshift`), and hands the socket to an inner node:http server or node:http2 server by
 * emitting `connection` on it, the way node:http2's own secure server hands an ALPN `http/1.1`
 * socket to node:http's connection listener (lib/internal/http2/core.js, `connectionListener`).
 *
 * - A connection whose first bytes are the HTTP/2 preface (RFC 9113 §3.4) is h2c; one whose
 *   first byte is a TLS handshake record's (an https:// client on the plain port) is `tls` and is
 *   closed at once, so the client reports a failed TLS handshake (as it did when httpolyglot's
 *   certificate-less TLS server took such sockets) rather than a record it cannot parse; one
 *   whose bytes stop matching the preface otherwise is HTTP/1.1 (garbage gets node:http's 400
 *   through `clientError`). Like httpolyglot, it waits for
 *   more bytes while a prefix of the preface is all it has; it has no timer of its own: the
 *   caller's first-byte deadline (transport/connection-guard.ts) destroys a silent socket.
 * - Before a socket is handed on (or closed, for `tls`), the server emits `protocol` (socket,
 *   {@link SniffedProtocol}). An h2c socket is handed on through
 *   {@link ProtocolSnifferOptions.startSession} when one is given (the server paces session
 *   starts with it), at once otherwise.
 * - A listener added to this server for an event of the inner servers (`request`, `clientError`,
 *   `session`, `upgrade`, … see HTTP1_EVENTS / HTTP2_EVENTS) is added to them too, as
 *   httpolyglot does, so Fastify and node:http's idioms work on it.
 *
 * Why not @httptoolkit/httpolyglot, which did this before: it sets
 * `socket._handle.isStreamBase = false` on every h2c socket (a workaround for HTTP/2 over
 * non-socket streams), and node:http2's Http2Session then wraps such a socket in a
 * JSStreamSocket: every byte read and written on every h2c connection went through JS streams
 * instead of the native StreamBase, about 19% of the server's CPU under fan-out (bench/README.md,
 * "Issue 12: transport"). A real TCP socket does not need it: Http2Session feeds the bytes read
 * and unshifted before it was created (`socket.readableLength`) to nghttp2 itself, so here the
 * socket's native handle goes to nghttp2 as is.
 */
export class ProtocolSniffer extends net.Server {
  /** The node:http server that runs HTTP/1.1 connections (it never listens itself). */
  readonly http1: http.Server;
  /** The node:http2 server that runs h2c sessions (it never listens itself). */
  readonly http2: http2.Http2Server;

  private readonly startSession: ProtocolSnifferOptions["startSession"];

  constructor(
    options: ProtocolSnifferOptions,
    requestListener: (
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
    ) => void,
  ) {
    super((socket) => this.sniff(socket, undefined));
    this.startSession = options.startSession;
    this.http1 = http.createServer(options.http1 ?? {}, requestListener as http.RequestListener);
    this.http2 = http2.createServer(
      options.http2 ?? {},
      requestListener as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    this.on("newListener", (event: string | symbol, listener: (...args: unknown[]) => void) => {
      if (typeof event !== "string") return;
      if (HTTP1_EVENTS.has(event)) this.http1.on(event, listener);
      if (HTTP2_EVENTS.has(event)) this.http2.on(event, listener);
    });
    this.on("removeListener", (event: string | symbol, listener: (...args: unknown[]) => void) => {
      if (typeof event !== "string") return;
      if (HTTP1_EVENTS.has(event)) this.http1.off(event, listener);
      if (HTTP2_EVENTS.has(event)) this.http2.off(event, listener);
    });
  }

  /**
   * Reads what the socket has so far (`seen`: the bytes of earlier calls) and hands it on once the
   * protocol is known; otherwise waits for the next `readable`.
   */
  private sniff(socket: net.Socket, seen: Buffer | undefined): void {
    const chunk = socket.read() as Buffer | null;
    const data = seen === undefined ? chunk : chunk === null ? seen : Buffer.concat([seen, chunk]);
    let protocol: SniffedProtocol | undefined;
    if (data !== null && data.length > 0) {
      const n = Math.min(data.length, HTTP2_PREFACE.length);
      if (data[0] === TLS_HANDSHAKE) protocol = "tls";
      else if (data.compare(HTTP2_PREFACE, 0, n, 0, n) !== 0) protocol = "http/1.1";
      else if (n === HTTP2_PREFACE.length) protocol = "h2c";
    }
    if (protocol === undefined) {
      // Unread data or none yet: wait for more (socket.read() consumed it; it is kept in `data`).
      socket.removeListener("error", ignoreError);
      socket.on("error", ignoreError);
      socket.once("readable", () => this.sniff(socket, data ?? undefined));
      return;
    }
    socket.unshift(data as Buffer);
    this.emit("protocol", socket, protocol);
    if (protocol === "tls") socket.destroy();
    if (protocol !== "h2c") {
      socket.removeListener("error", ignoreError);
      if (!socket.destroyed) this.http1.emit("connection", socket);
      return;
    }
    // Until node:http2 listens, an error (a peer reset meanwhile) goes to ignoreError.
    socket.removeListener("error", ignoreError);
    socket.on("error", ignoreError);
    const start = () => {
      socket.removeListener("error", ignoreError);
      if (!socket.destroyed) this.http2.emit("connection", socket);
    };
    if (this.startSession === undefined) start();
    else this.startSession(start);
  }
}
