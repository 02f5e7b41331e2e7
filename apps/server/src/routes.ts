import type { ConnectRouter } from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { type ChatServiceDeps, createChatService } from "./services/chat-service.js";
import { createLogService, type LogServiceDeps } from "./services/log-service.js";

/** Every service on one Connect router; knows nothing of Fastify (tested with createRouterTransport). */
export function createRoutes(deps: ChatServiceDeps & Omit<LogServiceDeps, "queueLimit">) {
  return (router: ConnectRouter): void => {
    router.service(ChatService, createChatService(deps));
    router.service(
      LogService,
      createLogService({ ...deps, queueLimit: deps.limits.subscriberQueueLimit }),
    );
  };
}
