import type { ConnectRouter } from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { type ChatServiceDeps, createChatService } from "./services/chat-service.js";
import { createLogService, type LogServiceDeps } from "./services/log-service.js";
import {
  createSubscribeHandler,
  type SubscribeHandlerOptions,
} from "./services/subscribe-handler.js";
import { createSubscriptions } from "./services/subscription.js";

/**
 * Every service on one Connect router; knows nothing of Fastify (tested with
 * createRouterTransport). With `subscribeHandler`, SubscribeMessages is served by its batched
 * fan-out writer (services/subscribe-handler.ts) with the router's interceptors and limits, and
 * connect-es's own handler answers what that writer leaves to it.
 */
export function createRoutes(
  deps: ChatServiceDeps &
    Omit<LogServiceDeps, "queueLimit"> & { subscribeHandler?: SubscribeHandlerOptions },
) {
  return (router: ConnectRouter): void => {
    const subscribe = createSubscriptions(deps);
    router.service(ChatService, createChatService({ ...deps, subscribe }));
    router.service(
      LogService,
      createLogService({ ...deps, queueLimit: deps.limits.subscriberQueueLimit }),
    );
    if (deps.subscribeHandler !== undefined) {
      const i = router.handlers.findIndex((h) => h.method === ChatService.method.subscribeMessages);
      const fallback = router.handlers[i];
      if (fallback !== undefined) {
        router.handlers[i] = createSubscribeHandler(fallback, subscribe, deps.subscribeHandler);
      }
    }
  };
}
