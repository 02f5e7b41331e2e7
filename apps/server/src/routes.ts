import type { DescMessage } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { createSubscribeHandler } from "./edge/rpc/subscribe-handler.js";
import { createUnaryHandler, type UnaryImpl } from "./edge/rpc/unary-handler.js";
import { answerUndecodable } from "./edge/rpc/undecodable.js";
import type { WireOptions } from "./edge/rpc/wire.js";
import { type ChatServiceDeps, createChatService } from "./services/chat-service.js";
import { createLogService, type LogServiceDeps } from "./services/log-service.js";
import { createSubscriptions } from "./services/subscription.js";

/**
 * Every service on one Connect router; knows nothing of Fastify (tested with
 * createRouterTransport). With `handlers` (the router's interceptors and limits),
 * SubscribeMessages is served by its batched fan-out writer (edge/rpc/subscribe-handler.ts) and
 * ChatService's unary methods by straight-line handlers (edge/rpc/unary-handler.ts); connect-es's
 * own handlers answer what those leave to them.
 */
export function createRoutes(
  deps: ChatServiceDeps & Omit<LogServiceDeps, "queueLimit"> & { handlers?: WireOptions },
) {
  return (router: ConnectRouter): void => {
    const subscribe = createSubscriptions(deps);
    const chat = createChatService({ ...deps, subscribe });
    router.service(ChatService, chat);
    router.service(
      LogService,
      createLogService({ ...deps, queueLimit: deps.limits.subscriberQueueLimit }),
    );
    const options = deps.handlers;
    if (options === undefined) return;
    // ChatService's hot paths on Switchboard's own handlers (connect-es's stay as fallbacks).
    router.handlers.forEach((handler, i) => {
      if (handler.service !== ChatService) return;
      // connect-es parses a unary request before the interceptors: its answer to an undecodable
      // one is mapped here (edge/rpc/undecodable.ts).
      const fallback = handler.method.methodKind === "unary" ? answerUndecodable(handler) : handler;
      router.handlers[i] = fallback;
      if (fallback.method === ChatService.method.subscribeMessages) {
        router.handlers[i] = createSubscribeHandler(fallback, subscribe, options);
      } else if (fallback.method.methodKind === "unary") {
        const impl = chat[fallback.method.localName as keyof typeof chat] as UnaryImpl<
          DescMessage,
          DescMessage
        >;
        router.handlers[i] = createUnaryHandler(fallback, impl, options);
      }
    });
  };
}
