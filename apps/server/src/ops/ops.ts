import type { Http2Session } from "node:http2";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { connectionGuardOf } from "../http-server.js";
import { SERVICES } from "../policy/method-policy.js";
import type { MessageStore } from "../store/message-store.js";
import type { Counters } from "../telemetry/telemetry.js";
import type { ConnectionGuard } from "../transport/connection-guard.js";
import { PeerDeadline } from "../transport/peer-deadline.js";
import { type AuthConfig, createAuthInterceptor, createTokenVerifier } from "./auth.js";
import { createHealthService, HealthStatus } from "./health.js";
import { createLimitsInterceptor, type LimitCounter, type LimitsConfig } from "./limits.js";
import { RpcMetrics } from "./metrics.js";
import { createObserveInterceptor } from "./observe.js";
import { reflectionRoutes } from "./reflection.js";
import { CallValues, type PeerSocket, peerKey, peerOfRequest } from "./rpc-context.js";
import { Lifecycle } from "./shutdown.js";

/**
 * Every service on the router, by full name (reflection's list, health's per-service status):
 * the services of policy/method-policy.ts's table.
 */
export const SERVICE_NAMES: readonly string[] = SERVICES.map((s) => s.typeName);

/** The configuration the operational features read. */
export interface OpsConfig extends AuthConfig, LimitsConfig {
  /** Interval of HTTP/2 keepalive PINGs on each connection, ms; 0 for none. */
  http2KeepaliveMs: number;
  /** A PING not answered within this closes the connection, ms. */
  http2KeepaliveTimeoutMs: number;
  /** An HTTP/2 connection without an open stream for this long is closed (GOAWAY), ms; 0 never. */
  idleTimeoutMs: number;
}

/** A TCP (or TLS) socket, as far as the session sweep needs it. */
type RawSocket = PeerSocket & { destroyed: boolean; destroy(): void };

/** How long a /readyz store ping may take, ms. */
const READY_PING_TIMEOUT_MS = 2_000;

/**
 * Switchboard's operational side, wired once by app.ts: the interceptors (in order: metrics and
 * the access log, refusal during shutdown, authentication, per-identity limits), the health and
 * reflection services, the HTTP endpoints /healthz, /readyz and /metrics, HTTP/2 keepalive and
 * idle timeouts, and the shutdown state.
 */
export class Ops {
  readonly metrics = new RpcMetrics();
  readonly health = new HealthStatus(SERVICE_NAMES);
  readonly lifecycle = new Lifecycle(this.health);
  readonly interceptors: Interceptor[];
  /** Whether calls need a bearer token (AUTH_JWT_SECRET or AUTH_JWKS_FILE is set). */
  readonly authenticated: boolean;
  private store: MessageStore | undefined;
  // The TCP socket under each HTTP/2 session, for the sweep in `plugin`.
  private readonly sockets = new Map<Http2Session, RawSocket>();
  // The transport's connection guard: close reasons for the idle and keepalive closes here.
  private guard: ConnectionGuard | undefined;

  /**
   * @param limitCounter where the per-identity limits are counted (ops/limits.ts): the store's
   *   shared counter (Redis), or this process's own when undefined.
   */
  constructor(
    private readonly config: OpsConfig,
    private readonly logger: Logger,
    limitCounter?: LimitCounter,
  ) {
    const verify = createTokenVerifier(config);
    this.authenticated = verify !== undefined;
    this.interceptors = [
      createObserveInterceptor({ metrics: this.metrics, logger }),
      this.lifecycle.interceptor(),
      ...(verify === undefined ? [] : [createAuthInterceptor(verify)]),
      createLimitsInterceptor(config, limitCounter),
    ];
  }

  /** Connects the domain: the store answers /readyz, the counters feed /metrics. */
  attach(domain: { store: MessageStore } & Counters): void {
    this.store = domain.store;
    this.metrics.observeDomain(domain);
  }

  /** connect-fastify's contextValues: the peer address of each call, for logs and limits. */
  contextValues = (req: FastifyRequest) => new CallValues().set(peerKey, peerOfRequest(req.raw));

  /** Registers grpc.health.v1.Health and both reflection services. */
  routes = (router: ConnectRouter): void => {
    router.service(Health, createHealthService(this.health));
    reflectionRoutes([...new Set(SERVICES.map((s) => s.file))], SERVICE_NAMES)(router);
  };

  /**
   * The Fastify side: GET /healthz (200 while the process runs), GET /readyz (200 when the store
   * answers and the server is not shutting down, else 503 with the reason), GET /metrics
   * (Prometheus text format), and keepalive and idle timeouts on every HTTP/2 connection.
   * None needs a token.
   */
  plugin = async (app: FastifyInstance): Promise<void> => {
    if (!this.authenticated) {
      this.logger.warn(
        "authentication is off: set AUTH_JWT_SECRET or AUTH_JWKS_FILE; anyone can connect and speak as any user",
      );
    }
    app.get("/healthz", async (_req, reply) => reply.type("text/plain").send("ok\n"));
    app.get("/readyz", async (_req, reply) => {
      const problem = await this.notReady();
      if (problem === undefined) return reply.type("text/plain").send("ok\n");
      return reply.code(503).type("text/plain").send(`not ready: ${problem}\n`);
    });
    app.get("/metrics", async (_req, reply) =>
      reply.type(this.metrics.registry.contentType).send(await this.metrics.scrape()),
    );
    // Connection counts and close reasons (transport/connection-guard.ts) on /metrics, and its
    // refusals and rapid resets in the log.
    this.guard = connectionGuardOf(app.server);
    if (this.guard !== undefined) {
      this.guard.attachLogger(this.logger);
      this.metrics.observeConnections(this.guard);
    }
    app.server.on("session", (session: Http2Session) => this.watchSession(session));
    // A session on a JSStreamSocket wrapper (a socket without a native handle; h2c no longer runs
    // on one, see transport/protocol-sniffer.ts) can leave the socket under it open when it is
    // destroyed, and server.close() (shutdown) would wait for it forever. Sweep: a destroyed
    // session's socket is destroyed too.
    const sweep = setInterval(() => {
      for (const [session, socket] of this.sockets) {
        if (!session.destroyed) continue;
        if (!socket.destroyed) socket.destroy();
        this.sockets.delete(session);
      }
    }, 250);
    sweep.unref();
    app.addHook("onClose", async () => clearInterval(sweep));
  };

  private async notReady(): Promise<string | undefined> {
    if (this.lifecycle.draining) return "shutting down";
    if (this.store === undefined) return "starting";
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.store.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("timed out")), READY_PING_TIMEOUT_MS);
        }),
      ]);
      return undefined;
    } catch (err) {
      return `store: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Shutdown: a connection made after shutdown began is closed with GOAWAY at once.
   * Keepalive: a PING every `http2KeepaliveMs`; a peer that does not answer within
   * `http2KeepaliveTimeoutMs` is dead and its connection is destroyed (its streams end). Idle: a
   * connection with no open stream for `idleTimeoutMs` is closed with GOAWAY. Both deadlines are
   * {@link PeerDeadline}s: an answer or a stream that arrived while the event loop was behind is
   * read before the verdict. Ping floods are Node's to absorb: nghttp2 bounds queued PING ACKs
   * and tears down a flooding connection.
   */
  private watchSession(session: Http2Session): void {
    // Only a session on a JSStreamSocket has a `stream`: the socket itself, safe to keep. A native
    // socket (h2c and TLS) is seen only through node:http2's proxy, which
    // throws ERR_HTTP2_SOCKET_UNBOUND once the session lets go of it: reading it from the sweep
    // crashed the process when a TLS client sent GOAWAY and kept its connection open. Those
    // sockets are closed by http-server.ts instead.
    const raw = (session.socket as unknown as PeerSocket).stream as RawSocket | undefined;
    if (raw !== undefined) {
      this.sockets.set(session, raw);
      session.once("close", () => this.sockets.delete(session));
    }
    // A client that received GOAWAY may connect again before the listening socket closes; such
    // a session would hold server.close() open until it idles out. It gets GOAWAY at once.
    if (this.lifecycle.draining) {
      this.guard?.markSessionClosing(session, "shutdown");
      session.close();
      return;
    }
    const { http2KeepaliveMs, http2KeepaliveTimeoutMs, idleTimeoutMs } = this.config;
    const timers: NodeJS.Timeout[] = [];
    if (http2KeepaliveMs > 0) {
      const ping = setInterval(() => {
        if (session.destroyed || session.closed) return;
        let answered = false;
        const deadline = PeerDeadline.start(http2KeepaliveTimeoutMs, {
          met: () => answered || session.destroyed,
          expire: () => {
            this.guard?.markSessionClosing(session, "keepalive");
            session.destroy();
          },
        });
        const sent = session.ping((err) => {
          answered = true;
          deadline.clear();
          if (err !== null && !session.destroyed) {
            this.guard?.markSessionClosing(session, "keepalive");
            session.destroy();
          }
        });
        if (!sent) deadline.clear();
      }, http2KeepaliveMs);
      ping.unref();
      timers.push(ping);
    }
    if (idleTimeoutMs > 0) {
      let open = 0;
      let idle: PeerDeadline | undefined;
      const arm = () => {
        idle?.clear();
        idle = PeerDeadline.start(idleTimeoutMs, {
          met: () => open > 0 || session.closed || session.destroyed,
          expire: () => {
            this.guard?.markSessionClosing(session, "idle");
            session.close();
          },
        });
      };
      arm();
      session.on("stream", (stream) => {
        open++;
        idle?.clear();
        stream.once("close", () => {
          open--;
          if (open === 0) arm();
        });
      });
      session.once("close", () => idle?.clear());
    }
    session.once("close", () => {
      for (const t of timers) clearInterval(t);
    });
  }
}
