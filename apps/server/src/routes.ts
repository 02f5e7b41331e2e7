import type { DescMessage, DescMethod } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import type { StreamServedHandler } from "./edge/rpc/lean-stream.js";
import { createSubscribeHandler } from "./edge/rpc/subscribe-handler.js";
import {
  createUnaryHandler,
  type NodeServedHandler,
  type UnaryImpl,
} from "./edge/rpc/unary-handler.js";
import { answerUndecodable } from "./edge/rpc/undecodable.js";
import type { WireOptions } from "./edge/rpc/wire.js";
import { type ChatServiceDeps, createChatService } from "./services/chat-service.js";
import { createLogService, type LogServiceDeps } from "./services/log-service.js";
import { createSubscriptions } from "./services/subscription.js";

/** The router's final handlers, as {@link createRoutes} wrote them (once). */
export interface HandlerList {
  /** Every RPC's handler, in registration order (the rpc-gate's map is keyed by their paths). */
  all: UniversalHandler[];
  /**
   * The lean handlers, served from Node's request and response on Fastify routes of their own
   * (edge/rpc/unary-routes.ts); connect-fastify serves the rest (left in `router.handlers`).
   */
  nodeServed: NodeServedHandler[];
  /**
   * The hot RPCs' lean handlers ({@link HOT}), which the lean lane (edge/rpc/lean-lane.ts) also
   * serves over gRPC on HTTP/2 straight from node:http2's streams; empty without `handlers`.
   */
  streamServed: StreamServedHandler[];
}

/**
 * The hot RPCs: the lean lane serves their gRPC calls on HTTP/2 beneath Fastify (app.ts gives it
 * their handlers). Every other call, and these over any other protocol, go through Fastify.
 */
export const HOT: ReadonlySet<DescMethod> = new Set<DescMethod>([
  ChatService.method.subscribeMessages,
  ChatService.method.sendMessage,
  Health.method.check,
]);

/** What {@link createRoutes} needs beyond the services' own dependencies. */
export interface RoutesDeps {
  /**
   * The router's interceptors and limits: with them, the lean handlers stand in for connect-es's
   * on the hot RPCs. Absent (LEAN_LANE=off, or a test of the reference lane): none do.
   */
  handlers?: WireOptions;
  /** More services on the same router (ops' health and reflection). */
  services?: (router: ConnectRouter) => void;
  /** grpc.health.v1.Health/Check's implementation, for its lean handler (with `handlers`). */
  healthCheck?: UnaryImpl<DescMessage, DescMessage>;
}

/**
 * Every service on one Connect router, and its handler list written in this one place; knows
 * nothing of Fastify (tested with createRouterTransport). Each handler is, in turn:
 * - SubscribeMessages, with `handlers`: its batched fan-out writer (edge/rpc/subscribe-handler.ts);
 * - a unary method: connect-es's handler with undecodable requests answered InvalidArgument
 *   (edge/rpc/undecodable.ts; connect-es parses a unary request before the interceptors), and,
 *   with `handlers`, for ChatService's unary methods and Health's Check, the straight-line
 *   handler (edge/rpc/unary-handler.ts) in front of it;
 * - any other: connect-es's own.
 * connect-es's handlers stay as the fallbacks of the lean ones (compression, GET, unusual content
 * types). The returned function leaves in `router.handlers` the ones connect-fastify registers.
 */
export function createRoutes(
  deps: ChatServiceDeps & Omit<LogServiceDeps, "queueLimit"> & RoutesDeps,
): (router: ConnectRouter) => HandlerList {
  return (router) => {
    const subscribe = createSubscriptions(deps);
    const chat = createChatService({ ...deps, subscribe });
    router.service(ChatService, chat);
    router.service(
      LogService,
      createLogService({ ...deps, queueLimit: deps.limits.subscriberQueueLimit }),
    );
    deps.services?.(router);
    const options = deps.handlers;
    const lean = new Map<DescMethod, UnaryImpl<DescMessage, DescMessage>>();
    if (options !== undefined) {
      for (const method of ChatService.methods) {
        if (method.methodKind !== "unary") continue;
        lean.set(method, chat[method.localName as keyof typeof chat] as never);
      }
      if (deps.healthCheck !== undefined) lean.set(Health.method.check, deps.healthCheck);
    }
    const all = router.handlers.map((handler): UniversalHandler | NodeServedHandler => {
      if (options !== undefined && handler.method === ChatService.method.subscribeMessages) {
        return createSubscribeHandler(handler, subscribe, options);
      }
      if (handler.method.methodKind !== "unary") return handler;
      const fallback = answerUndecodable(handler);
      const impl = lean.get(handler.method);
      return impl === undefined || options === undefined
        ? fallback
        : createUnaryHandler(fallback, impl, options);
    });
    const nodeServed = all.filter((h): h is NodeServedHandler => "serveNode" in h);
    const streamServed = nodeServed.filter(
      (h): h is NodeServedHandler & StreamServedHandler => "serveStream" in h && HOT.has(h.method),
    );
    router.handlers.splice(0, router.handlers.length, ...all.filter((h) => !("serveNode" in h)));
    return { all, nodeServed, streamServed };
  };
}
