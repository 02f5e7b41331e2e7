// Every RPC the server routes, read from the policy table (src/policy/method-policy.ts), each
// with a valid request. The suites that must cover every RPC (the fuzzer, fuzz-rpc.ts; the limits
// and credentials on every path, limits-every-path.test.ts) take their list from here, so a new
// RPC is covered without touching them: a new method of a service here does not compile until
// it has a request below, and a new service fails both suites until it has its requests.
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  toBinary,
  toJsonString,
} from "@bufbuild/protobuf";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { ServerReflection as ServerReflectionV1 } from "@switchboard/proto/gen/grpc/reflection/v1/reflection_pb";
import { ServerReflection as ServerReflectionV1alpha } from "@switchboard/proto/gen/grpc/reflection/v1alpha/reflection_pb";
import { METHOD_POLICIES, type MethodPolicy } from "../src/policy/method-policy.js";

/** A valid request for every method of `S`, by the method's local name (`sendMessage`, …). */
type Requests<S extends DescService> = {
  readonly [K in keyof S["method"]]: S["method"][K] extends DescMethod
    ? MessageInitShape<S["method"][K]["input"]>
    : never;
};

function requests<S extends DescService>(
  service: S,
  byName: Requests<S>,
): [DescService, Record<string, unknown>] {
  return [service, byName as Record<string, unknown>];
}

/** The room the valid requests name. */
export const EVERY_RPC_ROOM = "every-rpc";

/** One valid request per method of every service on the router. */
const REQUESTS = new Map<DescService, Record<string, unknown>>([
  requests(ChatService, {
    sendMessage: { room: EVERY_RPC_ROOM, user: "u", content: "hello" },
    subscribeMessages: { room: EVERY_RPC_ROOM, user: "u", sinceOffset: 0n },
    uploadMessages: { room: EVERY_RPC_ROOM, user: "u", content: "up" },
    chat: { room: EVERY_RPC_ROOM, user: "u", content: "hi" },
    streamMetrics: { intervalSeconds: 1 },
    getHistory: { room: EVERY_RPC_ROOM, afterOffset: 0n, limit: 5 },
    listRooms: {},
    listMembers: { room: EVERY_RPC_ROOM },
    watchRooms: {},
  }),
  requests(LogService, { streamLogs: { backlog: 2 } }),
  requests(Health, { check: { service: "" }, watch: { service: "" } }),
  requests(ServerReflectionV1, {
    serverReflectionInfo: { messageRequest: { case: "listServices", value: "" } },
  }),
  requests(ServerReflectionV1alpha, {
    serverReflectionInfo: { messageRequest: { case: "listServices", value: "" } },
  }),
]);

/** How the method streams, in the short names the suites print. */
export type RpcKind = "unary" | "server" | "client" | "bidi";

const KINDS: Record<DescMethod["methodKind"], RpcKind> = {
  unary: "unary",
  server_streaming: "server",
  client_streaming: "client",
  bidi_streaming: "bidi",
};

/** One RPC of the router, with a valid request. */
export interface EveryRpc {
  /** `chat.ChatService/SendMessage`, for test names. */
  name: string;
  /** The HTTP path: `/chat.ChatService/SendMessage`. */
  path: string;
  kind: RpcKind;
  /** Its row in the policy table (open, publishes, …), with the generated descriptor. */
  policy: MethodPolicy;
  /** The request message's schema. */
  schema: DescMessage;
  /** A valid request, as `create(schema, init)` takes it. */
  init: MessageInitShape<DescMessage>;
  /** The valid request in the binary format. */
  binary(): Uint8Array;
  /** The valid request in the JSON format (proto3 JSON mapping). */
  json(): string;
}

/**
 * Every method of every service in the policy table, in the table's order.
 * @throws at import when a service of the table has no requests here (add them to REQUESTS).
 */
export const EVERY_RPC: readonly EveryRpc[] = [...METHOD_POLICIES.values()].map((policy) => {
  const { method } = policy;
  const byName = REQUESTS.get(method.parent);
  if (byName === undefined) {
    throw new Error(
      `no valid requests for ${method.parent.typeName} in test/every-rpc.ts: add the service to REQUESTS`,
    );
  }
  const init = byName[method.localName] as MessageInitShape<DescMessage>;
  const schema = method.input;
  return {
    name: `${method.parent.typeName}/${method.name}`,
    path: `/${method.parent.typeName}/${method.name}`,
    kind: KINDS[method.methodKind],
    policy,
    schema,
    init,
    binary: () => toBinary(schema, create(schema, init)),
    json: () => toJsonString(schema, create(schema, init)),
  };
});
