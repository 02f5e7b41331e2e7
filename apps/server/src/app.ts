import type { Http2Session } from "node:http2";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "pino";
import type { Config } from "./config.js";
import { dashboardPlugin } from "./dashboard.js";
import { Rooms } from "./domain/rooms.js";
import { createServerFactory } from "./http-server.js";
import { notFoundHandler } from "./not-found.js";
import { createRoutes } from "./routes.js";
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
  const backend = await createBackend(config);
  const rooms = new Rooms(backend.store, backend.presence, config);
  const counters = {
    requests: 0,
    published: () => rooms.published,
    delivered: () => rooms.hub.deliveries,
  };
  const telemetry = new Telemetry(counters);

  // Counts every RPC for requests_per_second; one increment, no allocation on the hot path.
  const countRequests: Interceptor = (next) => (req) => {
    counters.requests++;
    return next(req);
  };

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
    shutdown.abort(new ConnectError("server shutting down", Code.Unavailable));
    for (const session of sessions) session.close();
  });

  await app.register(fastifyConnectPlugin, {
    routes: createRoutes({
      rooms,
      telemetry,
      logger,
      logTail,
      limits: config,
      chatHeartbeatS: config.chatHeartbeatS,
      instanceId: config.instanceId,
    }),
    interceptors: [countRequests],
    shutdownSignal: shutdown.signal,
    readMaxBytes: config.readMaxBytes,
    grpc: true,
    grpcWeb: true,
    connect: true,
  });
  await app.register(dashboardPlugin);
  app.setNotFoundHandler(notFoundHandler);
  app.addHook("onClose", async () => {
    telemetry.close();
    rooms.close();
    await backend.close();
  });
  return app;
}
