import { create, type DescFile, type DescMethod } from "@bufbuild/protobuf";
import { createConnectRouter } from "@connectrpc/connect";
import {
  ChatService,
  file_chat_chat,
  ListRoomsResponseSchema,
  RoomsEventSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { file_chat_log } from "@switchboard/proto/gen/chat/log_pb";
import { file_grpc_health_v1_health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { file_grpc_reflection_v1_reflection } from "@switchboard/proto/gen/grpc/reflection/v1/reflection_pb";
import { file_grpc_reflection_v1alpha_reflection } from "@switchboard/proto/gen/grpc/reflection/v1alpha/reflection_pb";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../config.js";
import { Ops } from "../ops/ops.js";
import { createRoutes } from "../routes.js";
import { METHOD_POLICIES, policyOf, SERVICES } from "./method-policy.js";

/** The proto files the server is built from: every service in them must be served. */
const SERVED_FILES: DescFile[] = [
  file_chat_chat,
  file_chat_log,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

/** The methods on the production router: Switchboard's routes and ops' (health, reflection). */
function routedMethods(): DescMethod[] {
  const router = createConnectRouter();
  // Registering builds handlers only; no dependency is called until a request arrives.
  const deps = { limits: { subscriberQueueLimit: 1 } } as unknown as Parameters<
    typeof createRoutes
  >[0];
  createRoutes(deps)(router);
  new Ops(loadConfig([], {}), pino({ level: "silent" })).routes(router);
  return router.handlers.map((h) => h.method);
}

describe("the method policy table", () => {
  it("has a row for every method of every service in the generated descriptors it serves", () => {
    const missing: string[] = [];
    for (const file of SERVED_FILES) {
      for (const service of file.services) {
        expect(SERVICES, service.typeName).toContain(service);
        for (const method of service.methods) {
          const policy = policyOf(method);
          if (policy === undefined) missing.push(`${service.typeName}.${method.name}`);
          else {
            expect(policy.method).toBe(method);
            expect(policy.kind).toBe(method.methodKind);
          }
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it("covers exactly the methods on the production router, and lists its services", () => {
    const routed = routedMethods();
    expect(new Set(routed)).toEqual(new Set(METHOD_POLICIES.keys()));
    expect(new Set(routed.map((m) => m.parent))).toEqual(new Set(SERVICES));
    expect(routed).toHaveLength(METHOD_POLICIES.size);
  });

  it("opens health checking and reflection only; every other method needs a token", () => {
    const open = [...METHOD_POLICIES.values()]
      .filter((p) => p.open)
      .map((p) => `${p.method.parent.typeName}/${p.method.name}`);
    expect(open.sort()).toEqual([
      "grpc.health.v1.Health/Check",
      "grpc.health.v1.Health/Watch",
      "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]);
  });

  it("counts SendMessage per call, UploadMessages and Chat per message against the publish rate", () => {
    const publishing = [...METHOD_POLICIES.values()].filter((p) => p.publishes);
    expect(publishing.map((p) => [p.method.name, p.requestStream])).toEqual([
      ["SendMessage", false],
      ["UploadMessages", true],
      ["Chat", true],
    ]);
  });

  it("filters ListRooms and WatchRooms by the rooms a token allows; a WatchRooms update left empty is dropped", () => {
    const allowed = (room: string) => room.startsWith("team-");
    const room = (name: string) => ({ name });
    const list = create(ListRoomsResponseSchema, {
      rooms: [room("team-a"), room("lobby"), room("team-b")],
    });
    policyOf(ChatService.method.listRooms)?.filterRooms?.(list, allowed);
    expect(list.rooms.map((r) => r.name)).toEqual(["team-a", "team-b"]);

    const watch = policyOf(ChatService.method.watchRooms)?.filterRooms;
    const update = (snapshot: boolean, names: string[], removed: string[] = []) =>
      create(RoomsEventSchema, { snapshot, rooms: names.map(room), removedRooms: removed });
    expect(watch?.(update(false, ["lobby"], ["old"]), allowed)).toBeUndefined();
    expect(watch?.(update(true, ["lobby"]), allowed)).toMatchObject({ snapshot: true, rooms: [] });
    expect(watch?.(update(false, ["lobby", "team-a"], ["team-z", "x"]), allowed)).toMatchObject({
      rooms: [{ name: "team-a" }],
      removedRooms: ["team-z"],
    });
    const withFilter = [...METHOD_POLICIES.values()].filter((p) => p.filterRooms !== undefined);
    expect(withFilter.map((p) => p.method.name)).toEqual(["ListRooms", "WatchRooms"]);
  });

  it("reserves the server's log and metrics to the admin role; no other method needs a role", () => {
    const withRole = [...METHOD_POLICIES.values()]
      .filter((p) => p.role !== undefined)
      .map((p) => `${p.method.parent.typeName}/${p.method.name}: ${p.role}`);
    expect(withRole.sort()).toEqual([
      "chat.ChatService/StreamMetrics: admin",
      "chat.LogService/StreamLogs: admin",
    ]);
  });
});
