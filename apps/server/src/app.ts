import cluster from "node:cluster";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import fastifyCors from "@fastify/cors";
import fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { Logger } from "pino";
import { clusterPrimaryLink } from "./cluster-channel.js";
import type { Config } from "./config.js";
import { dashboardPlugin } from "./dashboard.js";
import {
  notifyingPresence,
  notifyingStore,
  RoomDirectory,
  readRoomCounts,
} from "./domain/room-directory.js";
import { Rooms } from "./domain/rooms.js";
import { fastifyRefusals } from "./edge/rpc/fastify-refusals.js";
import { createInterceptorChain } from "./edge/rpc/interceptor-chain.js";
import { LeanLane } from "./edge/rpc/lean-lane.js";
import { notFoundHandler } from "./edge/rpc/not-found.js";
import { connectErrorBody, refuse, refuseStream } from "./edge/rpc/refusal.js";
import { genRequestId, requestIdKey } from "./edge/rpc/request-id.js";
import { createRouterOptions } from "./edge/rpc/router-options.js";
import { createRpcGate, type GatedHandler } from "./edge/rpc/rpc-gate.js";
import type { NodeServedHandler, UnaryImpl } from "./edge/rpc/unary-handler.js";
import { unaryRoutes } from "./edge/rpc/unary-routes.js";
import { createTransport } from "./edge/transport/http-server.js";
import { corsOptions, corsResponseHeaders } from "./ops/cors.js";
import { createHealthService } from "./ops/health.js";
import { Ops } from "./ops/ops.js";
import { createRoutes } from "./routes.js";
import { createBackend } from "./store/create-backend.js";
import type { LogTail } from "./telemetry/log-tail.js";
import { shareMachineTelemetry } from "./telemetry/machine.js";
import { Telemetry } from "./telemetry/telemetry.js";
import type { Tracing } from "./telemetry/tracing.js";

/**
 * Builds the Fastify app: the one-port server (see edge/transport/http-server.ts), the domain
 * (store, fan-out hub, rooms, telemetry), and every Connect service on it. Closing the app closes
 * the store.
 */
export async function buildApp(
  config: Config,
  {
    logger,
    logTail,
    tracing,
  }: {
    logger: Logger;
    logTail: LogTail;
    /** OpenTelemetry tracing, when it is on (server.ts starts it: telemetry/tracing.ts). */
    tracing?: Tracing | undefined;
  },
): Promise<FastifyInstance> {
  const backend = await createBackend(
    config,
    (err, context) => {
      logger.warn({ err, context }, "store trouble");
    },
    // A Redis outage: one line when it starts, one when it ends, whatever happens between.
    (event) => {
      if (event.state === "down") {
        logger.warn(
          { context: event.context, reason: event.reason },
          `redis unreachable (${event.reason}): calls that need it fail with unavailable until it answers again`,
        );
      } else {
        logger.info(
          { durationMs: event.durationMs, failures: event.failures },
          `redis reachable again after ${(event.durationMs / 1000).toFixed(1)} s`,
        );
      }
    },
  );
  // Health, reflection, metrics, the access log, auth, limits, shutdown state: ops/ops.ts. The
  // limits are counted where the store says: in Redis (shared by every node), else here.
  const ops = new Ops(config, logger, backend.limits, tracing);
  const measured = ops.metrics.instrumentStore(backend.store);
  // With tracing on: spans for appends, history reads and each feed's deliveries
  // (telemetry/traced-store.ts); off, the store as it is.
  const store: typeof measured =
    tracing === undefined
      ? measured
      : tracing.traceStore(measured, (): number => rooms.hub.deliveries);
  // WatchRooms: read again as soon as this node appends, joins or leaves (other nodes: polled).
  const directory = new RoomDirectory(() => readRoomCounts(rooms));
  const nudge = () => directory.nudge();
  const rooms = new Rooms(
    notifyingStore(store, nudge),
    notifyingPresence(backend.presence, nudge),
    config,
    (err, context) => {
      logger.warn({ err, context }, "rooms background work failed");
    },
  );
  // The process's counts, each read where it is kept: RPCs by ops' interceptor, messages and
  // subscribers by the domain, open streams by telemetry. StreamMetrics and /metrics read them.
  const telemetry = new Telemetry({ requests: () => ops.metrics.started, ...rooms.counts });
  // A worker of WORKERS=N: StreamMetrics reports the whole machine (telemetry/machine.ts).
  if (config.workers > 1 && cluster.isWorker) {
    shareMachineTelemetry(clusterPrimaryLink(), telemetry, config.instanceId);
  }
  ops.attach({ store, ...telemetry.counters });

  // Every refusal Fastify or Node makes answers with the Connect error body, or trailers-only
  // for gRPC (edge/rpc/fastify-refusals.ts).
  const refusals = fastifyRefusals(logger);
  // The lean lane (edge/rpc/lean-lane.ts): the hot RPCs over gRPC on HTTP/2, served from
  // node:http2's streams beneath Fastify, with the same context values (peer, request id) and
  // CORS headers as Fastify's routes give them. Its handlers are added with the router's below.
  const lean = new LeanLane({
    contextValues: (stream, headers) =>
      ops.contextValues({ stream }).set(requestIdKey, genRequestId({ headers })),
    responseHeaders: corsResponseHeaders(config.corsOrigins),
  });
  // The transport answers its refusals (connection caps, header limits) in the caller's protocol
  // with the RPC side's answers; it knows no RPC protocol itself, and asks the lean lane which
  // HTTP/2 streams it serves. Its connection counts and close reasons go to /metrics, its
  // refusals and rapid resets to the log.
  const transport = createTransport(
    config,
    { refuse, refuseStream, errorBody: connectErrorBody },
    logger,
    lean,
  );
  ops.metrics.observeConnections(transport.connections);
  const app = fastify({
    loggerInstance: logger as FastifyBaseLogger,
    serverFactory: transport.serverFactory,
    // Connect reports RPC outcomes itself; Fastify's per-request lines would double them.
    logController: new LogController({ disableRequestLogging: true }),
    // The caller's x-request-id when it is a short token, else a random UUID
    // (edge/rpc/request-id.ts).
    genReqId: genRequestId,
    frameworkErrors: refusals.frameworkErrors,
    clientErrorHandler: refusals.clientErrorHandler,
    // During shutdown a new call is refused by the lifecycle interceptor (edge/rpc/shutdown.ts)
    // with `unavailable` in the caller's protocol; Fastify's own 503 would answer gRPC callers with
    // no status, answer before the request body is read, and held graceful shutdown past its
    // deadline under load (ops-shutdown.test.ts).
    return503OnClosing: false,
  });
  app.setErrorHandler(refusals.errorHandler);
  // Shutdown (fastify.close): every open stream ends with Unavailable, HTTP/2 sessions get GOAWAY.
  // Fastify's close does not close HTTP/2 sessions by itself (fastify#5716): their owner does
  // (edge/transport/http2-sessions.ts).
  const shutdown = new AbortController();
  app.addHook("preClose", async () => {
    // Readiness false, health NOT_SERVING and new calls refused first, then streams end.
    await ops.lifecycle.beginShutdown();
    // A restart is not a departure: no LEAVE from here on for the streams that end now.
    rooms.close();
    shutdown.abort(new ConnectError("server shutting down", Code.Unavailable));
    transport.sessions.goAwayAll();
  });

  // The interceptor chain, outermost first (edge/rpc/interceptor-chain.ts says why in this order).
  const interceptors = createInterceptorChain(ops, config);
  // Unknown fields in a JSON request are invalid_argument (protobuf's JSON mapping default;
  // connect-es ignores them unless told): a misspelt `clientMessageID` would otherwise drop the
  // idempotency key it was meant to carry, silently. Binary protobuf keeps ignoring unknown
  // fields, as the wire format's evolution rules require.
  // The router's options, once: connect-fastify's router and Switchboard's own handlers
  // (edge/rpc/router-options.ts).
  const handlers = createRouterOptions({
    interceptors,
    readMaxBytes: config.readMaxBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    shutdownSignal: shutdown.signal,
    jsonOptions: { ignoreUnknownFields: false },
  });
  const healthCheck = createHealthService(ops.health).check as UnaryImpl<DescMessage, DescMessage>;
  const routes = createRoutes({
    rooms,
    directory,
    telemetry,
    logger,
    logTail,
    limits: config,
    chatHeartbeatS: config.chatHeartbeatS,
    instanceId: config.instanceId,
    // Health and reflection on the same router.
    services: ops.routes,
    // LEAN_LANE=off: no lean handlers; connect-es's own serve every call (the reference lane).
    ...(config.leanLane ? { handlers, healthCheck } : {}),
  });
  // CORS_ORIGINS: an allow-list; without one, browsers call from the same origin only.
  await app.register(fastifyCors, corsOptions(config.corsOrigins));
  // Requests connect-es would refuse with an empty body (wrong HTTP method, unsupported content
  // type, bidi over HTTP/1.1) are answered before their body is read (edge/rpc/rpc-gate.ts). The
  // hook is added before the routes, so that it applies to them; the router fills the map.
  const rpcHandlers = new Map<string, GatedHandler>();
  app.addHook("onRequest", createRpcGate(rpcHandlers));
  const contextValues = (req: FastifyRequest) =>
    ops.contextValues(req.raw).set(requestIdKey, req.id);
  // The router's handler list is written once, by routes.ts; the lean handlers get Fastify routes
  // of their own (edge/rpc/unary-routes.ts), served from Node's request and response.
  const nodeServed: NodeServedHandler[] = [];
  await app.register(fastifyConnectPlugin, {
    routes: (router) => {
      const list = routes(router);
      for (const handler of list.all) rpcHandlers.set(handler.requestPath, handler);
      nodeServed.push(...list.nodeServed);
      lean.serve(list.streamServed);
    },
    ...handlers,
    contextValues,
    grpc: true,
    grpcWeb: true,
    connect: true,
  });
  await app.register(unaryRoutes(nodeServed, contextValues));
  await app.register(ops.plugin);
  await app.register(dashboardPlugin);
  app.setNotFoundHandler(notFoundHandler);
  // Members a previous process left joined get the presence grace from the moment we listen.
  app.addHook("onListen", async () => rooms.startPresenceSweep());
  app.addHook("onClose", async () => {
    telemetry.close();
    rooms.close();
    await backend.close();
    // The spans still buffered are exported before the process exits.
    await tracing?.shutdown();
  });
  return app;
}
