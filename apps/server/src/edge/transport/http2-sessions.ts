import type { Http2Session, ServerHttp2Stream } from "node:http2";
import http2 from "node:http2";
import type { ConnectionGuard } from "./connection-guard.js";
import type { PeerSocket } from "./peer.js";
import { PeerDeadline } from "./peer-deadline.js";

/** The HTTP/2 session timers {@link Http2Sessions} runs. */
export interface Http2SessionsConfig {
  /** Interval of keepalive PINGs on each connection, ms; 0 for none. */
  http2KeepaliveMs: number;
  /** A PING not answered within this closes the connection, ms. */
  http2KeepaliveTimeoutMs: number;
  /** A connection without an open stream for this long is closed (GOAWAY), ms; 0 never. */
  idleTimeoutMs: number;
}

/** Connection-level receive window, bytes (set per session; not an HTTP/2 SETTING). */
export const CONNECTION_WINDOW = 16 << 20;

/**
 * HTTP/2: a stream the peer resets (RST_STREAM with an error code) within this of opening it
 * counts against the connection's reset budget, answered or not; a longer-lived stream (a
 * subscription the client is done with) does not, ms.
 */
export const RAPID_RESET_MS = 500;

/** How often sessions on a JSStreamSocket wrapper are checked for a socket left open, ms. */
const WRAPPED_SWEEP_MS = 250;

/** A socket under a JSStreamSocket wrapper, as far as the sweep needs it. */
type RawSocket = PeerSocket & { destroyed: boolean; destroy(): void };

/**
 * The one owner of every HTTP/2 session's lifecycle: the server's only `session` listener
 * (edge/transport/http-server.ts registers {@link watch}) and, per session, its only `stream`
 * listener. For each session it
 *
 * - binds it to its TCP connection in the {@link ConnectionGuard} (connection caps, close
 *   reasons, session errors) and counts the streams the peer resets within
 *   {@link RAPID_RESET_MS} of opening them against the connection's reset budget (rapid reset,
 *   CVE-2023-44487: GOAWAY ENHANCE_YOUR_CALM, by the guard);
 * - sets the connection window to {@link CONNECTION_WINDOW} (Node's default of 64 KiB throttles
 *   fan-out to many streams on one connection);
 * - keepalive: a PING every `http2KeepaliveMs`; a peer that does not answer within
 *   `http2KeepaliveTimeoutMs` is dead and its connection is destroyed (its streams end; reason
 *   `keepalive`);
 * - idle: a connection with no open stream for `idleTimeoutMs` is closed with GOAWAY (`idle`);
 * - shutdown: {@link goAwayAll} sends GOAWAY (NO_ERROR) to every session (Fastify's close does
 *   not close HTTP/2 sessions by itself, fastify#5716), and a session that starts afterwards (a
 *   client that received GOAWAY may connect again before the listening socket closes) gets
 *   GOAWAY at once (`shutdown`).
 *
 * Both deadlines are {@link PeerDeadline}s: an answer or a stream that arrived while the event
 * loop was behind is read before the verdict. Ping floods are Node's to absorb: nghttp2 bounds
 * queued PING ACKs and tears down a flooding connection.
 */
export class Http2Sessions {
  private readonly open = new Set<Http2Session>();
  /** Sessions on a JSStreamSocket wrapper, with the socket under it (see {@link sweepWrapped}). */
  private readonly wrapped = new Map<Http2Session, RawSocket>();
  private sweep: NodeJS.Timeout | undefined;
  private shuttingDown = false;

  constructor(
    private readonly config: Http2SessionsConfig,
    private readonly guard: ConnectionGuard,
  ) {}

  /** Open HTTP/2 sessions. */
  get size(): number {
    return this.open.size;
  }

  /** The server's `session` listener. */
  watch = (session: Http2Session): void => {
    const resets = this.guard.adoptSession(session);
    session.setLocalWindowSize(CONNECTION_WINDOW);
    this.open.add(session);
    session.once("close", () => this.open.delete(session));
    this.watchWrapped(session);
    if (this.shuttingDown) {
      this.guard.markSessionClosing(session, "shutdown");
      session.close();
      return;
    }
    const idle = this.config.idleTimeoutMs > 0 ? this.idleTimer(session) : undefined;
    // First in line, before node:http2 hands the stream to the request handler. node:http2 emits
    // `stream` on a later tick than the HEADERS frame: when a burst of HEADERS + RST_STREAM was
    // read at once (h2c), the stream is already reset here (and the request handler skips it).
    session.prependListener("stream", (stream: ServerHttp2Stream) => {
      if (session.destroyed) return;
      if (stream.closed || stream.destroyed) {
        resets?.countReset();
        return;
      }
      idle?.opened();
      // Otherwise (TLS reads a record at a time, and answers may go out between a HEADERS and
      // its RST_STREAM): a stream the peer resets within RAPID_RESET_MS of opening it.
      const opened = performance.now();
      stream.once("close", () => {
        idle?.closed();
        if (resets === undefined) return;
        const code = stream.rstCode;
        if (code === undefined || code === http2.constants.NGHTTP2_NO_ERROR) return;
        if (session.closed || session.destroyed) return;
        // The peer closing its socket cancels every open stream too; that is no reset.
        if (resets.socketDestroyed()) return;
        if (performance.now() - opened > RAPID_RESET_MS) return;
        resets.countReset();
      });
    });
    if (this.config.http2KeepaliveMs > 0) {
      const ping = this.keepalive(session);
      session.once("close", () => clearInterval(ping));
    }
  };

  /**
   * Shutdown: GOAWAY (NO_ERROR) to every open session (its open streams run to their end; the
   * streams' own shutdown ends them), and to every session that starts from now on.
   */
  goAwayAll(): void {
    this.shuttingDown = true;
    for (const session of this.open) {
      this.guard.markSessionClosing(session, "shutdown");
      session.close();
    }
  }

  private keepalive(session: Http2Session): NodeJS.Timeout {
    const { http2KeepaliveMs, http2KeepaliveTimeoutMs } = this.config;
    const ping = setInterval(() => {
      if (session.destroyed || session.closed) return;
      let answered = false;
      const deadline = PeerDeadline.start(http2KeepaliveTimeoutMs, {
        met: () => answered || session.destroyed,
        expire: () => {
          this.guard.markSessionClosing(session, "keepalive");
          session.destroy();
        },
      });
      const sent = session.ping((err) => {
        answered = true;
        deadline.clear();
        if (err !== null && !session.destroyed) {
          this.guard.markSessionClosing(session, "keepalive");
          session.destroy();
        }
      });
      if (!sent) deadline.clear();
    }, http2KeepaliveMs);
    ping.unref();
    return ping;
  }

  /** The idle deadline of one session: armed while it has no open stream. */
  private idleTimer(session: Http2Session): { opened(): void; closed(): void } {
    let streams = 0;
    let idle: PeerDeadline | undefined;
    const arm = () => {
      idle?.clear();
      idle = PeerDeadline.start(this.config.idleTimeoutMs, {
        met: () => streams > 0 || session.closed || session.destroyed,
        expire: () => {
          this.guard.markSessionClosing(session, "idle");
          session.close();
        },
      });
    };
    arm();
    session.once("close", () => idle?.clear());
    return {
      opened: () => {
        streams++;
        idle?.clear();
      },
      closed: () => {
        streams--;
        if (streams === 0) arm();
      },
    };
  }

  /**
   * A session on a JSStreamSocket wrapper (a socket without a native handle; h2c no longer runs
   * on one, see edge/transport/protocol-sniffer.ts) can leave the socket under it open when it is
   * destroyed, and server.close() (shutdown) would wait for it forever: while such sessions
   * exist, a sweep destroys a destroyed session's socket. Only such a session's socket proxy has
   * a `stream` (the socket itself, safe to keep); a native socket (h2c and TLS) is seen only
   * through node:http2's proxy, which throws ERR_HTTP2_SOCKET_UNBOUND once the session lets go of
   * it (reading it from a sweep crashed the process when a TLS client sent GOAWAY and kept its
   * connection open). Those sockets are closed by edge/transport/http-server.ts instead.
   */
  private watchWrapped(session: Http2Session): void {
    const raw = (session.socket as unknown as PeerSocket).stream as RawSocket | undefined;
    if (raw === undefined) return;
    this.wrapped.set(session, raw);
    session.once("close", () => this.wrapped.delete(session));
    if (this.sweep !== undefined) return;
    this.sweep = setInterval(() => {
      for (const [each, socket] of this.wrapped) {
        if (!each.destroyed) continue;
        if (!socket.destroyed) socket.destroy();
        this.wrapped.delete(each);
      }
      if (this.wrapped.size === 0) {
        clearInterval(this.sweep);
        this.sweep = undefined;
      }
    }, WRAPPED_SWEEP_MS);
    this.sweep.unref();
  }
}
