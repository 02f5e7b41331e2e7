import type { Http2Session } from "node:http2";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import fastifyCors from "@fastify/cors";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "pino";
import type { Config } from "./config.js";
import { dashboardPlugin } from "./dashboard.js";
import { Rooms } from "./domain/rooms.js";
import { createServerFactory } from "./http-server.js";
import { notFoundHandler } from "./not-found.js";
import { corsOptions } from "./ops/cors.js";
import { createHealthService } from "./ops/health.js";
import { Ops } from "./ops/ops.js";
import { createRoutes } from "./routes.js";
import { answerUndecodable, createUndecodableInterceptor } from "./rpc/undecodable.js";
import { createUnaryHandler, type UnaryImpl } from "./services/unary-handler.js";
import { createValidationInterceptor } from "./services/validation-interceptor.js";
import { createBackend } from "./store/backend.js";
import type { LogTail } from "./telemetry/log-tail.js";
import { Telemetry } from "./telemetry/telemetry.js";

/**
 * Builds the Fastify app: the one-port server (see http-server.ts), the domain (store, fan-out
 * hub, rooms, telemetry), and every Connect service on it. Closing the app closes the store.
 */
export async function buildApp(
  config: Config,
  { logger, logTail }: { logger: Logger; logTail: LogTail },
): Promise<FastifyInstance> {
  const backend = await createBackend(config, (err, context) => {
    logger.warn({ err, context }, "store trouble");
  });
  // Health, reflection, metrics, the access log, auth, limits, shutdown state: ops/ops.ts.
  const ops = new Ops(config, logger);
  const store = ops.metrics.instrumentStore(backend.store);
  const rooms = new Rooms(store, backend.presence, config, (err, context) => {
    logger.warn({ err, context }, "rooms background work failed");
  });
  // StreamMetrics and /metrics read the same counters: RPCs counted by ops' interceptor,
  // messages by the domain.
  const counters = {
    get requests() {
      return ops.metrics.started;
    },
    published: () => rooms.published,
    delivered: () => rooms.hub.deliveries,
  };
  const telemetry = new Telemetry(counters);
  ops.attach({
    store,
    published: counters.published,
    delivered: counters.delivered,
    slowConsumerDisconnects: () => rooms.hub.slowConsumerDisconnects,
    subscribers: () => [...rooms.hub.counts().values()].reduce((a, b) => a + b, 0),
    openStreams: () => telemetry.openStreams,
  });

  const app = fastify({
    loggerInstance: logger as FastifyBaseLogger,
    serverFactory: createServerFactory(config),
    // Connect reports RPC outcomes itself; Fastify's per-request lines would double them.
    logController: new LogController({ disableRequestLogging: true }),
  });
  // Shutdown (fastify.close): every open stream ends with Unavailable, HTTP/2 sessions get GOAWAY.
  // Fastify's close does not close HTTP/2 sessions by itself (fastify#5716).
  const shutdown = new AbortController();
  const sessions = new Set<Http2Session>();
  app.server.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  app.addHook("preClose", async () => {
    // Readiness false, health NOT_SERVING and new calls refused first, then streams end.
    await ops.lifecycle.beginShutdown();
    shutdown.abort(new ConnectError("server shutting down", Code.Unavailable));
    for (const session of sessions) session.close();
  });

  // An undecodable streaming request message is InvalidArgument where it is read (first, so it
  // wraps the parsed stream itself); validation last, after authentication has set `user`.
  const interceptors = [
    createUndecodableInterceptor(),
    ...ops.interceptors,
    createValidationInterceptor(config),
  ];
  const handlers = {
    interceptors,
    readMaxBytes: config.readMaxBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    shutdownSignal: shutdown.signal,
  };
  const healthCheck = createHealthService(ops.health).check as UnaryImpl<DescMessage, DescMessage>;
  const routes = createRoutes({
    rooms,
    telemetry,
    logger,
    logTail,
    limits: config,
    chatHeartbeatS: config.chatHeartbeatS,
    instanceId: config.instanceId,
    handlers,
  });
  // CORS_ORIGINS: an allow-list; without one, browsers call from the same origin only.
  await app.register(fastifyCors, corsOptions(config.corsOrigins));
  await app.register(fastifyConnectPlugin, {
    routes: (router) => {
      routes(router);
      ops.routes(router);
      // Health's Check on the straight-line unary handler too (connect-es's own answers a JSON
      // body it cannot parse over gRPC with no status at all: rpc/undecodable.ts, wellFormed),
      // and every unary method still on connect-es's own handler answers an undecodable request
      // with InvalidArgument.
      router.handlers.forEach((handler, i) => {
        if (
          handler.method.methodKind === "unary" &&
          handler.service.typeName !== "chat.ChatService"
        ) {
          const fallback = answerUndecodable(handler);
          router.handlers[i] =
            handler.method === Health.method.check
              ? createUnaryHandler(fallback, healthCheck, handlers)
              : fallback;
        }
      });
    },
    interceptors,
    contextValues: ops.contextValues,
    ...(config.maxTimeoutMs > 0 ? { maxTimeoutMs: config.maxTimeoutMs } : {}),
    shutdownSignal: shutdown.signal,
    readMaxBytes: config.readMaxBytes,
    grpc: true,
    grpcWeb: true,
    connect: true,
  });
  await app.register(ops.plugin);
  await app.register(dashboardPlugin);
  app.setNotFoundHandler(notFoundHandler);
  app.addHook("onClose", async () => {
    telemetry.close();
    rooms.close();
    await backend.close();
  });
  return app;
}
