import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { type AuthConfig, createAuthInterceptor, createTokenVerifier } from "../edge/rpc/auth.js";
import { createLimitsInterceptor, type LimitsConfig } from "../edge/rpc/limits.js";
import { createObserveInterceptor } from "../edge/rpc/observe.js";
import { CallValues, peerKey } from "../edge/rpc/rpc-context.js";
import { Lifecycle } from "../edge/rpc/shutdown.js";
import { peerOfRequest } from "../edge/transport/peer.js";
import { SERVICES } from "../policy/method-policy.js";
import type { LimitCounter } from "../store/limits.js";
import type { MessageStore } from "../store/message-store.js";
import type { Counters } from "../telemetry/telemetry.js";
import type { Tracing } from "../telemetry/tracing.js";
import { createHealthService, HealthStatus } from "./health.js";
import { RpcMetrics } from "./metrics.js";
import { reflectionRoutes } from "./reflection.js";

/**
 * Every service on the router, by full name (reflection's list, health's per-service status):
 * the services of policy/method-policy.ts's table.
 */
export const SERVICE_NAMES: readonly string[] = SERVICES.map((s) => s.typeName);

/** The configuration the operational features read. */
export type OpsConfig = AuthConfig & LimitsConfig;

/** How long a /readyz store ping may take, ms. */
const READY_PING_TIMEOUT_MS = 2_000;

/**
 * Switchboard's operational side, wired once by app.ts: the interceptors (in order: metrics and
 * the access log, refusal during shutdown, authentication, per-identity limits), the health and
 * reflection services, the HTTP endpoints /healthz, /readyz and /metrics, and the shutdown
 * state. (HTTP/2 keepalive, idle and shutdown GOAWAY: edge/transport/http2-sessions.ts.)
 */
export class Ops {
  readonly metrics = new RpcMetrics();
  readonly health = new HealthStatus(SERVICE_NAMES);
  readonly lifecycle = new Lifecycle(this.health);
  readonly interceptors: Interceptor[];
  private store: MessageStore | undefined;

  /**
   * @param limitCounter where the per-identity limits are counted (store/limits.ts): the store's
   *   shared counter (Redis), or this process's own when undefined.
   * @param tracing OpenTelemetry tracing when it is on (telemetry/tracing.ts): the observe
   *   interceptor makes each call's server span.
   */
  constructor(config: OpsConfig, logger: Logger, limitCounter?: LimitCounter, tracing?: Tracing) {
    const verify = createTokenVerifier(config);
    this.interceptors = [
      createObserveInterceptor({ metrics: this.metrics, logger, tracing }),
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

  /**
   * A call's context values: the peer address, for logs and limits, of its request (Node's
   * request, or `{ stream }` for an HTTP/2 stream the lean lane serves).
   */
  contextValues = (raw: Parameters<typeof peerOfRequest>[0]) =>
    new CallValues().set(peerKey, peerOfRequest(raw));

  /** Registers grpc.health.v1.Health and both reflection services. */
  routes = (router: ConnectRouter): void => {
    router.service(Health, createHealthService(this.health));
    reflectionRoutes([...new Set(SERVICES.map((s) => s.file))], SERVICE_NAMES)(router);
  };

  /**
   * The Fastify side: GET /healthz (200 while the process runs), GET /readyz (200 when the store
   * answers and the server is not shutting down, else 503 with the reason), GET /metrics
   * (Prometheus text format). None needs a token.
   */
  plugin = async (app: FastifyInstance): Promise<void> => {
    app.get("/healthz", async (_req, reply) => reply.type("text/plain").send("ok\n"));
    app.get("/readyz", async (_req, reply) => {
      const problem = await this.notReady();
      if (problem === undefined) return reply.type("text/plain").send("ok\n");
      return reply.code(503).type("text/plain").send(`not ready: ${problem}\n`);
    });
    app.get("/metrics", async (_req, reply) =>
      reply.type(this.metrics.registry.contentType).send(await this.metrics.scrape()),
    );
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
}
