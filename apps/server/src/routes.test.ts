import { createConnectRouter } from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";
import { Rooms } from "./domain/rooms.js";
import { Ops } from "./ops/ops.js";
import { createRoutes } from "./routes.js";
import { createMemoryStore } from "./store/memory/message-store.js";
import { createMemoryPresence } from "./store/memory/presence.js";
import { LogTail } from "./telemetry/log-tail.js";
import { Telemetry } from "./telemetry/telemetry.js";

const config = loadConfig([], { STORE: "memory" });

function list(lean: boolean) {
  const rooms = new Rooms(createMemoryStore(), createMemoryPresence(), config);
  const telemetry = new Telemetry({ requests: () => 0, ...rooms.counts });
  const ops = new Ops(config, pino({ level: "silent" }));
  const router = createConnectRouter();
  const deps = {
    rooms,
    telemetry,
    logger: pino({ level: "silent" }),
    logTail: new LogTail(),
    limits: config,
    chatHeartbeatS: 30,
    instanceId: "test",
    services: ops.routes,
  };
  const handlers = createRoutes(
    lean
      ? {
          ...deps,
          handlers: {
            interceptors: [],
            readMaxBytes: 1 << 20,
            shutdownSignal: new AbortController().signal,
          },
          healthCheck: async () => ({}) as never,
        }
      : deps,
  )(router);
  telemetry.close();
  return { router, ...handlers };
}

describe("createRoutes: the router's handler list, written once", () => {
  it("lean lane on: the hot RPCs are node-served, the rest stays on the router, each RPC once", () => {
    const { router, all, nodeServed } = list(true);
    const paths = all.map((h) => h.requestPath);
    expect(new Set(paths).size).toBe(paths.length);
    const hot = [
      ChatService.method.subscribeMessages,
      ...ChatService.methods.filter((m) => m.methodKind === "unary"),
      Health.method.check,
    ];
    expect(nodeServed.map((h) => h.method).sort(byName)).toEqual(hot.sort(byName));
    // connect-fastify serves exactly the others.
    expect(router.handlers.length + nodeServed.length).toBe(all.length);
    for (const h of router.handlers) expect("serveNode" in h).toBe(false);
  });

  it("lean lane off (LEAN_LANE=off): every handler is connect-es's, on the router", () => {
    const { router, all, nodeServed } = list(false);
    expect(nodeServed).toEqual([]);
    expect(router.handlers).toEqual(all);
    expect(all.map((h) => h.method.parent.typeName)).toContain("grpc.health.v1.Health");
  });
});

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
