import type { IncomingMessage, ServerResponse } from "node:http";
import { STATUS_CODES } from "node:http";
import type {
  Http2ServerRequest,
  Http2ServerResponse,
  Http2Session,
  IncomingHttpHeaders,
  ServerHttp2Stream,
} from "node:http2";
import http2 from "node:http2";
import type { Socket } from "node:net";
import { Code } from "@connectrpc/connect";
import { SETTINGS } from "../../settings.js";
import { type PeerSocket, peerOf } from "./peer.js";
import { PeerDeadline } from "./peer-deadline.js";
import { ResetBudget } from "./reset-budget.js";

/**
 * Why the server closed a connection: the `reason` label of
 * `switchboard_connections_closed_total`. `peer` is a connection the client closed (or that ended
 * normally); every other reason is the server's decision.
 */
export const CLOSE_REASONS = [
  "peer",
  "first_byte_timeout",
  "tls_handshake_timeout",
  "header_timeout",
  "header_overflow",
  "bad_request",
  "idle",
  "keepalive",
  "limit_per_ip",
  "limit_total",
  "rapid_reset",
  "invalid_frames",
  "protocol_error",
  "shutdown",
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/** The limits a {@link ConnectionGuard} enforces; see README "Security". */
export interface ConnectionGuardConfig {
  /** A new connection must send its first request bytes (TLS: finish its handshake) within this,
   * ms. */
  firstByteTimeoutMs: number;
  /** HTTP/1.1: a request's header block must arrive within this from its first byte, ms (for 408).
   * */
  http1HeadersTimeoutMs: number;
  /** Largest request header block, bytes (for the 431 message). */
  maxHeaderBytes: number;
  /** Largest request message, bytes (READ_MAX_BYTES; for the log line of an early answer). */
  readMaxBytes: number;
  /** Open connections in total; 0: no cap. */
  maxConnections: number;
  /** Open connections from one client IP address; 0: no cap. */
  maxConnectionsPerIp: number;
  /** HTTP/2: streams a connection may reset right after opening them, at once (token bucket size).
   * */
  http2ResetBurst: number;
  /** HTTP/2: refill of that budget, resets per second. */
  http2ResetRatePerS: number;
}

/** A refusal the transport answers: a Connect code and message, as the caller's protocol carries
 * them. */
export interface TransportRefusal {
  code: Code;
  /** For the caller: which limit was met. */
  message: string;
  /** The HTTP status a Connect caller gets (default: the code's own). */
  httpStatus?: number;
  /** More response headers, lower-case names (`connection: close`). */
  headers?: Record<string, string>;
}

/**
 * How the transport answers what it refuses, in the caller's protocol. Given by the composition
 * root (app.ts passes edge/rpc/refusal.ts's), so that the transport knows no RPC protocol.
 */
export interface RefusalAnswers {
  /** Answers `req` with `refusal` in the protocol its request speaks; nothing once answered. */
  refuse(req: AnyRequest, res: AnyResponse, refusal: TransportRefusal): void;
  /**
   * The same for a raw HTTP/2 stream and its request headers (a stream served beneath the compat
   * layer: edge/transport/http-server.ts's stream lane).
   */
  refuseStream(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    refusal: TransportRefusal,
  ): void;
  /**
   * The body of a refusal written on a raw HTTP/1.1 socket (Node's `clientError`: no request
   * was read, so every caller gets the Connect error body, `application/json`).
   */
  errorBody(code: Code, message: string): string;
}

/** The part of a pino logger the guard writes to. */
export interface GuardLogger {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  debug(fields: object, msg: string): void;
}

/** How long a refused connection may stay to send its first request and read the refusal, ms. */
export const REFUSAL_GRACE_MS = 2_000;

/** How long a socket the server ended may keep its half open before it is destroyed, ms. */
const END_LINGER_MS = 1_000;

/**
 * HTTP/2: how long a stream answered before its request body ended stays open (the peer held by
 * flow control) before RST_STREAM NO_ERROR ends it, ms. Time for the peer to read the answer
 * first: curl, for one, reports a reset stream it is still sending on as an error, answer or not.
 */
export const BODY_LINGER_MS = 1_000;

type Refusal = "limit_per_ip" | "limit_total";

/** One accepted TCP connection. */
interface Connection {
  readonly socket: Socket;
  readonly ip: string;
  readonly peer: string;
  /** Counted against the caps (false: refused, it only gets its refusal). */
  readonly admitted: boolean;
  readonly refusal: Refusal | undefined;
  /** Why the server closes it; the first reason set wins. */
  reason: CloseReason | undefined;
  /** Its protocol is known (handed to HTTP/1.1 or HTTP/2, or TLS handshake done). */
  identified: boolean;
  tls: boolean;
  /** The first-byte deadline (refused: the refusal grace), until it is met or the socket closes. */
  deadline: PeerDeadline | undefined;
  /** Already logged as a rapid reset. */
  resetLogged: boolean;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * Connection hygiene for the one port: every TCP connection is accepted here first, and
 *
 * - must identify its protocol (send its first request bytes; over TLS, finish the handshake)
 *   within `firstByteTimeoutMs`, or it is destroyed (`first_byte_timeout`,
 *   `tls_handshake_timeout`): the protocol sniffer waits for those bytes with no timer of its own;
 * - is counted against `maxConnections` in total and `maxConnectionsPerIp` per client address
 *   (the references: nginx's `limit_conn`, Centrifugo's `client.connection_limit`). A connection
 *   over a cap is still read for up to {@link REFUSAL_GRACE_MS}, so that its first request gets a
 *   refusal in its own protocol ({@link refuseRequest}: `resource_exhausted` / 429 per address,
 *   `unavailable` / 503 in total), and is then closed;
 * - on HTTP/2, may reset at most `http2ResetBurst` streams within RAPID_RESET_MS of opening them
 *   (refilled at `http2ResetRatePerS`; edge/transport/http2-sessions.ts tells which closes are
 *   resets): beyond that, rapid reset (CVE-2023-44487), the session gets GOAWAY
 *   ENHANCE_YOUR_CALM and is destroyed, with a log line naming the peer.
 *
 * Every close is counted by reason ({@link closedCounts}) and the open connections by
 * {@link open}, for /metrics.
 */
export class ConnectionGuard {
  /** Open TCP connections (refused ones included, until they close). */
  open = 0;
  /** Open connections that were refused (over a cap). */
  private refusedOpen = 0;
  /** Closed connections since start, by reason. */
  readonly closedCounts = new Map<CloseReason, number>(CLOSE_REASONS.map((r) => [r, 0]));
  private admitted = 0;
  private readonly perIp = new Map<string, number>();
  private readonly bySocket = new WeakMap<object, Connection>();
  private readonly byPeer = new Map<string, Connection>();
  private readonly sessions = new WeakMap<Http2Session, Connection>();
  private logger: GuardLogger | undefined;

  constructor(
    readonly config: ConnectionGuardConfig,
    private readonly answers: RefusalAnswers,
  ) {}

  /** Where refusals, rapid resets and timeouts are logged (the server's logger, set by ops). */
  attachLogger(logger: GuardLogger): void {
    this.logger = logger;
  }

  /** A new TCP connection (the listening socket's `connection` event). */
  accept(socket: Socket, tls: boolean): void {
    if (this.bySocket.has(socket)) return;
    const ip = socket.remoteAddress ?? "unknown";
    const { maxConnections, maxConnectionsPerIp, firstByteTimeoutMs } = this.config;
    const fromIp = this.perIp.get(ip) ?? 0;
    let refusal: Refusal | undefined;
    if (maxConnections > 0 && this.admitted >= maxConnections) refusal = "limit_total";
    else if (maxConnectionsPerIp > 0 && fromIp >= maxConnectionsPerIp) refusal = "limit_per_ip";
    const conn: Connection = {
      socket,
      ip,
      peer: peerOf(socket),
      admitted: refusal === undefined,
      refusal,
      reason: refusal,
      identified: false,
      tls,
      deadline: undefined,
      resetLogged: false,
    };
    this.open++;
    if (!conn.admitted) this.refusedOpen++;
    if (conn.admitted) {
      this.admitted++;
      this.perIp.set(ip, fromIp + 1);
    }
    this.bySocket.set(socket, conn);
    this.byPeer.set(conn.peer, conn);
    const ms = refusal ? Math.min(REFUSAL_GRACE_MS, firstByteTimeoutMs) : firstByteTimeoutMs;
    conn.deadline = PeerDeadline.start(ms, {
      // A refused connection is closed at the end of its grace, identified or not.
      met: () => conn.refusal === undefined && conn.identified,
      bytesRead: () => socket.bytesRead,
      expire: () => this.expire(conn),
    });
    socket.once("close", () => this.release(conn));
    if (refusal !== undefined) {
      this.logger?.warn(
        {
          peer: conn.peer,
          reason: refusal,
          limit: refusal === "limit_total" ? maxConnections : maxConnectionsPerIp,
        },
        "connection refused: over the connection limit",
      );
    }
  }

  /**
   * The connection's protocol is known (`socket`: the TCP socket, or the TLS socket over it): its
   * first-byte deadline no longer applies.
   */
  identified(socket: Socket): void {
    const conn = this.connectionOfSocket(socket);
    if (conn === undefined || conn.identified) return;
    conn.identified = true;
    if (conn.tls) this.bySocket.set(socket, conn);
    if (conn.refusal === undefined) conn.deadline?.clear();
  }

  /** Records why the server is closing the connection under `socket` (first reason wins). */
  markClosing(socket: PeerSocket & object, reason: CloseReason): void {
    const conn = this.connectionOfSocket(socket);
    if (conn !== undefined) conn.reason ??= reason;
  }

  /** Records why the server is closing an HTTP/2 session's connection (idle, keepalive, …). */
  markSessionClosing(session: Http2Session, reason: CloseReason): void {
    const conn = this.sessions.get(session);
    if (conn !== undefined) conn.reason ??= reason;
  }

  /** Marks every open connection as closed by shutdown (unless it has a reason already). */
  markAllClosing(reason: CloseReason): void {
    for (const conn of this.byPeer.values()) conn.reason ??= reason;
  }

  /**
   * The refusal for a request on a connection over a cap, in the caller's protocol; undefined
   * when the connection was admitted.
   */
  refusalFor(req: AnyRequest): { code: Code; message: string } | undefined {
    if (this.refusedOpen === 0) return undefined;
    return this.refusalOf(this.connectionOfRequest(req));
  }

  /** {@link refusalFor} for a raw HTTP/2 stream (edge/transport/http-server.ts's stream lane). */
  refusalForStream(stream: ServerHttp2Stream): { code: Code; message: string } | undefined {
    if (this.refusedOpen === 0) return undefined;
    const session = stream.session;
    return session === undefined ? undefined : this.refusalOf(this.sessions.get(session));
  }

  private refusalOf(conn: Connection | undefined): { code: Code; message: string } | undefined {
    if (conn?.refusal === undefined) return undefined;
    return conn.refusal === "limit_total"
      ? {
          code: Code.Unavailable,
          message: `the server is at its connection limit (${SETTINGS.maxConnections.env} ${this.config.maxConnections}); retry later`,
        }
      : {
          code: Code.ResourceExhausted,
          message: `too many connections from ${conn.ip} (${SETTINGS.maxConnectionsPerIp.env} ${this.config.maxConnectionsPerIp})`,
        };
  }

  /**
   * Answers a request on a refused connection ({@link refusalFor}) and closes the connection
   * after the answer: HTTP/1.1 with `Connection: close`, HTTP/2 with GOAWAY (NO_ERROR; streams
   * after the refused ones are not processed).
   */
  refuseRequest(req: AnyRequest, res: AnyResponse, refusal: { code: Code; message: string }): void {
    if (req.httpVersionMajor === 2) {
      this.answers.refuse(req, res, refusal);
      const session = (req as Http2ServerRequest).stream.session;
      if (session !== undefined && !session.closed) session.close();
      return;
    }
    this.answers.refuse(req, res, { ...refusal, headers: { connection: "close" } });
  }

  /** {@link refuseRequest} for a raw HTTP/2 stream and its request headers. */
  refuseStream(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    refusal: { code: Code; message: string },
  ): void {
    this.answers.refuseStream(stream, headers, refusal);
    const session = stream.session;
    if (session !== undefined && !session.closed) session.close();
  }

  /**
   * node:http's `clientError` for HTTP/1.1: a header block not received within the header
   * deadline (408, `deadline_exceeded`), too large (431, `resource_exhausted`), or malformed (400,
   * `invalid_argument`), answered with the Connect error body, then the connection is closed.
   * Registered before Fastify's own handler, which does nothing (edge/rpc/fastify-refusals.ts).
   *
   * node:http finds a late header block from a timer (its connections check), so the 408 is a
   * {@link PeerDeadline}'s verdict: a header block that had arrived while the event loop was
   * behind is read first and served.
   */
  answerClientError = (err: NodeJS.ErrnoException, socket: Socket): void => {
    if (err.code === "ECONNRESET" || socket.destroyed) return;
    if (err.code === "ERR_TLS_HANDSHAKE_TIMEOUT") {
      // node:tls's backstop behind the first-byte deadline (edge/transport/http-server.ts): no HTTP
      // yet.
      this.markClosing(socket, "tls_handshake_timeout");
      socket.destroy();
    } else if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
      // The request whose header block is late has none yet: node:http's parser still holds the
      // previous request (or none), and holds a new one once a header block is complete.
      const pending = parserOf(socket)?.incoming;
      PeerDeadline.passed(this.config.http1HeadersTimeoutMs, {
        met: () => socket.destroyed || parserOf(socket)?.incoming !== pending,
        bytesRead: () => socket.bytesRead,
        expire: () =>
          this.answerAndClose(
            socket,
            408,
            Code.DeadlineExceeded,
            `request headers not received within ${this.config.http1HeadersTimeoutMs} ms (${SETTINGS.http1HeadersTimeoutMs.env})`,
            "header_timeout",
          ),
      });
    } else if (err.code === "HPE_HEADER_OVERFLOW") {
      this.answerAndClose(
        socket,
        431,
        Code.ResourceExhausted,
        `request headers are over ${SETTINGS.maxHeaderBytes.env} (${this.config.maxHeaderBytes})`,
        "header_overflow",
      );
    } else {
      this.answerAndClose(
        socket,
        400,
        Code.InvalidArgument,
        "malformed HTTP/1.1 request",
        "bad_request",
      );
    }
  };

  /**
   * node:http's keep-alive timeout for HTTP/1.1 (the server's `timeout` event: the only socket
   * timeout the server sets): the kept-alive connection with no new request is closed (`idle`),
   * as node:http closes it when nobody listens, but as a {@link PeerDeadline}'s verdict: a request
   * that had arrived while the event loop was behind is read first and served.
   */
  closeIdle = (socket: Socket): void => {
    if (socket.destroyed) return;
    const before = socket.bytesRead;
    // A new period, were one needed, is the socket's own timeout (keep-alive timeout + 1 s).
    PeerDeadline.passed(socket.timeout ?? 0, {
      met: () => socket.destroyed || socket.bytesRead > before,
      expire: () => {
        this.markClosing(socket, "idle");
        socket.destroy();
      },
    });
  };

  /** Answers an HTTP/1.1 client error with the Connect error body, then closes the connection. */
  private answerAndClose(
    socket: Socket,
    status: number,
    code: Code,
    message: string,
    reason: CloseReason,
  ): void {
    if (socket.destroyed) return;
    this.markClosing(socket, reason);
    this.logger?.debug({ peer: peerOf(socket), reason, status }, "HTTP/1.1 client error");
    const body = this.answers.errorBody(code, message);
    // Nothing of a response may have been sent on this connection (node:http's own check).
    const sent = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })
      ._httpMessage?.headersSent;
    if (socket.writable && sent !== true) {
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      const timer = setTimeout(() => socket.destroy(), END_LINGER_MS);
      timer.unref();
      socket.once("close", () => clearTimeout(timer));
    } else {
      socket.destroy();
    }
  }

  /**
   * A request answered before its body was read to the end (a refusal such as a body over
   * READ_MAX_BYTES) is logged with its peer, path and reason. Over HTTP/2 the answer goes first
   * and the stream is ended only after it, with RST_STREAM NO_ERROR (RFC 9113 §8.1) after
   * {@link BODY_LINGER_MS}; meanwhile flow control stops the peer. (node:http2 alone resets such a
   * stream at once when nothing of the body was read, and leaves it open for good otherwise.)
   */
  watchRequestBody(req: AnyRequest, res: AnyResponse): void {
    if (req.httpVersionMajor === 2) {
      this.watchStreamBody((req as Http2ServerRequest).stream, req.headers);
      return;
    }
    const length = req.headers["content-length"];
    if (
      (length === undefined || length === "0") &&
      req.headers["transfer-encoding"] === undefined
    ) {
      return;
    }
    res.once("finish", () => {
      if (!req.complete) {
        const grpcStatus = res.getHeader("grpc-status");
        this.logEarlyAnswer(
          this.bySocket.get((req as IncomingMessage).socket),
          req.url,
          req.headers["content-length"],
          res.statusCode,
          grpcStatus === undefined ? undefined : Number(grpcStatus),
        );
      }
    });
  }

  /**
   * {@link watchRequestBody} for an HTTP/2 stream (the compat layer's, or a raw one served beneath
   * it: edge/transport/http-server.ts's stream lane), with its request headers. The status logged
   * is the one the stream sent (and `grpcStatus` a trailers-only answer's).
   */
  watchStreamBody(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    if (stream.endAfterHeaders) return;
    // Only what the log line needs: an open stream (a subscription) keeps this listener.
    const path = headers[":path"];
    const length = headers["content-length"];
    // Runs before node:http2's own `finish` handling, which would reset the stream at once.
    stream.once("finish", () => {
      if (stream.readableEnded || stream.closed || stream.destroyed) return;
      stream.pause();
      const sent = (stream as ServerHttp2Stream & { sentHeaders?: IncomingHttpHeaders })
        .sentHeaders;
      const grpcStatus = sent?.["grpc-status"];
      this.logEarlyAnswer(
        stream.session === undefined ? undefined : this.sessions.get(stream.session),
        path,
        length,
        Number(sent?.[":status"] ?? 200),
        grpcStatus === undefined ? undefined : Number(grpcStatus),
      );
      const timer = setTimeout(() => {
        if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
      }, BODY_LINGER_MS);
      timer.unref();
      stream.once("close", () => clearTimeout(timer));
    });
  }

  /**
   * The connection of a request, without touching node:http2's socket proxy (which throws once a
   * session has let go of its socket): by its session, or its HTTP/1.1 socket.
   */
  private connectionOfRequest(req: AnyRequest): Connection | undefined {
    if (req.httpVersionMajor === 2) {
      const session = (req as Http2ServerRequest).stream.session;
      return session === undefined ? undefined : this.sessions.get(session);
    }
    return this.bySocket.get((req as IncomingMessage).socket);
  }

  private logEarlyAnswer(
    conn: Connection | undefined,
    path: string | undefined,
    contentLength: string | undefined,
    status: number,
    grpcStatus: number | undefined,
  ): void {
    if (this.logger === undefined) return;
    const length = Number(contentLength);
    this.logger.info(
      {
        peer: conn?.peer ?? "unknown",
        path,
        status,
        ...(grpcStatus === undefined ? {} : { grpcStatus }),
        reason:
          length > this.config.readMaxBytes
            ? `request body of ${length} bytes is over ${SETTINGS.readMaxBytes.env} (${this.config.readMaxBytes})`
            : "answered before the request body ended",
      },
      "request refused before its body was read",
    );
  }

  /**
   * Binds an HTTP/2 session to its connection: the connection is identified (its first-byte
   * deadline no longer applies), and a session error is recorded as its close reason. Returns the
   * connection's reset budget (`http2ResetBurst`, refilled at `http2ResetRatePerS`):
   * `countReset()` spends one reset, and beyond the budget the session gets GOAWAY
   * ENHANCE_YOUR_CALM and is destroyed (rapid reset); `socketDestroyed()` says whether the
   * connection's socket is gone (the peer closing it cancels every open stream: no reset).
   * Undefined for a session on no connection the guard knows. Called by
   * edge/transport/http2-sessions.ts, which decides which stream closes are resets.
   */
  adoptSession(
    session: Http2Session,
  ): { countReset(): void; socketDestroyed(): boolean } | undefined {
    const socket = session.socket as unknown as PeerSocket & object;
    const conn =
      this.connectionOfSocket(socket) ??
      (socket.stream === undefined ? undefined : this.connectionOfSocket(socket.stream));
    if (conn === undefined) return undefined;
    this.sessions.set(session, conn);
    conn.identified = true;
    if (conn.refusal === undefined) conn.deadline?.clear();
    const budget = new ResetBudget(this.config.http2ResetBurst, this.config.http2ResetRatePerS);
    let resets = 0;
    session.once("error", (err: NodeJS.ErrnoException) => {
      // The session error of our own rapid-reset GOAWAY: logged already.
      if (conn.reason === "rapid_reset") return;
      conn.reason ??=
        err.code === "ERR_HTTP2_TOO_MANY_INVALID_FRAMES" ? "invalid_frames" : "protocol_error";
      this.logger?.info(
        { peer: conn.peer, reason: conn.reason, err: err.message },
        "HTTP/2 session error",
      );
    });
    return {
      countReset: () => {
        resets++;
        if (!budget.take()) this.rapidReset(session, conn, resets);
      },
      socketDestroyed: () => conn.socket.destroyed,
    };
  }

  private rapidReset(session: Http2Session, conn: Connection, resets: number): void {
    conn.reason ??= "rapid_reset";
    if (!conn.resetLogged) {
      conn.resetLogged = true;
      this.logger?.warn(
        {
          peer: conn.peer,
          resets,
          burst: this.config.http2ResetBurst,
          ratePerS: this.config.http2ResetRatePerS,
        },
        "HTTP/2 rapid reset: too many streams reset right after they were opened; GOAWAY ENHANCE_YOUR_CALM",
      );
    }
    // GOAWAY ENHANCE_YOUR_CALM is submitted to nghttp2 at once, then destroy(code) stops
    // processing the session: the rest of a burst already read is refused by node:http2 without
    // creating streams. (It also emits the session `error` ERR_HTTP2_SESSION_ERROR, which the
    // listener above ignores.) On a native socket this runs inside nghttp2's processing of one
    // network read: destroy alone only closes the session once that read is done, and a read
    // holding more than 1,000 reset streams first met nghttp2's own rapid-reset limit, whose GOAWAY
    // says INTERNAL_ERROR (1 burst in 4 on the test machine). The submitted GOAWAY goes first.
    // (@types/node types only destroy(error, code); node:http2 takes a code first as well.)
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM as unknown as Error);
    // node:http2 then ends the socket under the session (h2c and TLS alike: both run on the
    // socket's native handle), after the GOAWAY, and destroys it once its FIN is out. This timer
    // covers a socket whose end never finishes (a peer that reads nothing).
    const timer = setTimeout(() => conn.socket.destroy(), END_LINGER_MS);
    timer.unref();
  }

  private expire(conn: Connection): void {
    if (conn.refusal === undefined) {
      if (conn.identified) return;
      conn.reason ??=
        conn.tls && conn.socket.bytesRead > 0 ? "tls_handshake_timeout" : "first_byte_timeout";
      this.logger?.debug(
        { peer: conn.peer, reason: conn.reason, bytesRead: conn.socket.bytesRead },
        "connection closed: no request in time",
      );
    }
    conn.socket.destroy();
  }

  private release(conn: Connection): void {
    conn.deadline?.clear();
    this.open--;
    if (!conn.admitted) this.refusedOpen--;
    if (conn.admitted) {
      this.admitted--;
      const n = (this.perIp.get(conn.ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(conn.ip);
      else this.perIp.set(conn.ip, n);
    }
    if (this.byPeer.get(conn.peer) === conn) this.byPeer.delete(conn.peer);
    // An HTTP/2 session's `error` (the reason of a protocol error) can come after its socket
    // closed: the close is counted a turn later.
    setImmediate(() => {
      const reason = conn.reason ?? "peer";
      this.closedCounts.set(reason, (this.closedCounts.get(reason) ?? 0) + 1);
    });
  }

  private connectionOfSocket(socket: PeerSocket & object): Connection | undefined {
    const known = this.bySocket.get(socket);
    if (known !== undefined) return known;
    const addressed =
      socket.remoteAddress === undefined && socket.stream !== undefined ? socket.stream : socket;
    return this.byPeer.get(peerOf(addressed));
  }
}

/** node:http's parser of an HTTP/1.1 socket: `incoming` is the last request whose headers it read.
 * */
function parserOf(socket: Socket): { incoming: unknown } | null | undefined {
  return (socket as Socket & { parser?: { incoming: unknown } | null }).parser;
}
