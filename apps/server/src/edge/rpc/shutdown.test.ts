import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { describe, expect, it } from "vitest";
import { createHealthService, HealthStatus, ServingStatus } from "../../ops/health.js";
import { isShutdown, Lifecycle, shutdownError } from "./shutdown.js";

describe("Lifecycle", () => {
  it("refuses new calls with Unavailable once shutdown began; health answers NOT_SERVING", async () => {
    const health = new HealthStatus(["chat.ChatService"]);
    const lifecycle = new Lifecycle(health);
    const transport = createRouterTransport(
      (router) => {
        router.service(ChatService, { listRooms: () => ({}) });
        router.service(Health, createHealthService(health));
      },
      { router: { interceptors: [lifecycle.interceptor()] } },
    );
    const chat = createClient(ChatService, transport);
    const check = createClient(Health, transport);
    await expect(chat.listRooms({})).resolves.toBeDefined();
    await lifecycle.beginShutdown(0);
    expect(lifecycle.draining).toBe(true);
    const err = await chat.listRooms({}).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.Unavailable, rawMessage: "server shutting down" });
    expect((await check.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
    expect((await check.check({ service: "chat.ChatService" })).status).toBe(
      ServingStatus.NOT_SERVING,
    );
  });

  it("names the resume offset and recognises its own errors", () => {
    expect(shutdownError(42).rawMessage).toBe("server shutting down; resume from offset 42");
    expect(isShutdown(shutdownError(42))).toBe(true);
    expect(isShutdown(new ConnectError("server shutting down", Code.Unavailable))).toBe(true);
    expect(isShutdown(new ConnectError("store down", Code.Unavailable))).toBe(false);
  });
});
