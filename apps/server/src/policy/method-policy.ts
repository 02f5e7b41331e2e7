// What each RPC means to the interceptors, in one place. This folder is the per-method policy:
// neither transport (rpc/: protocols, wire formats, fast paths) nor operations (ops/: the
// interceptors that enforce it, health, metrics), which both read it; the interceptors' one
// per-message helper (each-message.ts) lives beside it. Model: connect-es, which dispatches its
// handlers on the generated `DescMethod`; the interceptors dispatch on it here.

import type { DescMethod, DescService, MessageShape } from "@bufbuild/protobuf";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { Health } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { ServerReflection as ServerReflectionV1 } from "@switchboard/proto/gen/grpc/reflection/v1/reflection_pb";
import { ServerReflection as ServerReflectionV1alpha } from "@switchboard/proto/gen/grpc/reflection/v1alpha/reflection_pb";
import { checkDraftLimits, checkUserLimit, type MessageLimits } from "../domain/validation.js";

/**
 * The roles a token's `roles` claim can grant (edge/rpc/auth.ts; README "Authentication"). `admin`:
 * the operator's RPCs, which show every caller's activity: the server's own log
 * (LogService.StreamLogs: peer addresses, methods, user names) and its metrics (StreamMetrics).
 * A role is required by a method's row ({@link MethodRow.role}); a name the server does not know
 * grants nothing.
 */
export const ROLES = ["admin"] as const;
/** One of {@link ROLES}. */
export type Role = (typeof ROLES)[number];

/**
 * What the interceptors do with one RPC, written once per method in {@link METHOD_POLICIES}.
 * `M` is the method's generated descriptor, so the rules see its own request and response types.
 */
export interface MethodRow<M extends DescMethod = DescMethod> {
  /**
   * Open to every caller: no bearer token needed (edge/rpc/auth.ts), not counted in the
   * per-identity limits (edge/rpc/limits.ts), still served while the server shuts down
   * (edge/rpc/shutdown.ts; health then answers NOT_SERVING). True for health checking and
   * reflection only.
   */
  readonly open: boolean;
  /**
   * The role a caller needs, with authentication on: only a token whose `roles` claim lists it
   * may call the method; any other valid token gets PermissionDenied naming the role
   * (edge/rpc/auth.ts). Absent: every valid token may call it. With authentication off, everyone
   * may.
   */
  readonly role?: Role;
  /**
   * Each request message publishes one chat message, and takes one token of the caller's publish
   * rate (edge/rpc/limits.ts): a unary call once, a client or bidi stream once per message, as it
   * arrives. Over the rate: ResourceExhausted "publish rate exceeded".
   */
  readonly publishes: boolean;
  /**
   * The request limits that are settings (MAX_USER_BYTES, MAX_CONTENT_BYTES), run on each request
   * message after the schema's rules (edge/rpc/validation-interceptor.ts), after authentication
   * (so `user` is the token's) and before the handler. Every other request rule is a protovalidate
   * rule in the proto, not here: a setting cannot be a schema rule (domain/validation.ts).
   * @throws ValidationError naming the field: InvalidArgument for the caller, "message N: …"
   *   (from 0) in a client or bidi stream.
   */
  limits?(message: MessageShape<M["input"]>, limits: MessageLimits): void;
  /**
   * The response as a token with a `rooms` claim may see it (edge/rpc/auth.ts): rooms outside the
   * claim removed. Returns the message to send, or undefined to send nothing (a response stream's
   * message only; a unary response is always sent). Absent: responses name no rooms the claim
   * could hide. (Request messages need no row: every `room` field of every request is checked
   * against the claim, every `user` field is overwritten with the token's `sub`.)
   */
  filterRooms?(
    message: MessageShape<M["output"]>,
    allowed: (room: string) => boolean,
  ): MessageShape<M["output"]> | undefined;
}

/**
 * One method's row, with what its descriptor says: the interceptors read everything per method
 * from here, looked up by the `DescMethod` connect-es hands them (`req.method`).
 */
export interface MethodPolicy extends MethodRow {
  /** The generated descriptor, e.g. `ChatService.method.sendMessage`. */
  readonly method: DescMethod;
  /** The stream kind, from the proto: `unary`, `server_streaming`, `client_streaming`,
   * `bidi_streaming`. */
  readonly kind: DescMethod["methodKind"];
  /** The client sends a stream of messages (client_streaming, bidi_streaming). */
  readonly requestStream: boolean;
}

/** A row for every method of `S`, by the method's local name (`sendMessage`, …). */
type ServiceRows<S extends DescService> = {
  readonly [K in keyof S["method"]]: S["method"][K] extends DescMethod
    ? MethodRow<S["method"][K]>
    : never;
};

/** Health checking and reflection: open, publish nothing, no limits. */
const OPEN: MethodRow = { open: true, publishes: false };

/**
 * Every service on the router, and one row per method of each: the single table the
 * interceptors dispatch on (by `DescMethod`, as connect-es dispatches its handlers). A service
 * missing here has no health status and is not listed by reflection (and
 * policy/method-policy.test.ts fails); a method missing from its service's rows does not compile.
 *
 * Adding an RPC: declare it in the proto, add its row here, write its handler.
 */
const TABLE = [
  rows(ChatService, {
    sendMessage: {
      open: false,
      publishes: true,
      limits: (m, limits) => checkDraftLimits(m, limits),
    },
    subscribeMessages: {
      open: false,
      publishes: false,
      limits: (m, limits) => checkUserLimit(m.user, limits),
    },
    uploadMessages: {
      open: false,
      publishes: true,
      limits: (m, limits) => checkDraftLimits(m, limits),
    },
    chat: {
      open: false,
      publishes: true,
      limits: (m, limits) => checkDraftLimits(m, limits),
    },
    streamMetrics: { open: false, publishes: false, role: "admin" },
    getHistory: { open: false, publishes: false },
    listRooms: {
      open: false,
      publishes: false,
      filterRooms: (m, allowed) => {
        m.rooms = m.rooms.filter((r) => allowed(r.name));
        return m;
      },
    },
    listMembers: { open: false, publishes: false },
    watchRooms: {
      open: false,
      publishes: false,
      // As ListRooms; an update left empty is not sent (the snapshot always is).
      filterRooms: (m, allowed) => {
        m.rooms = m.rooms.filter((r) => allowed(r.name));
        m.removedRooms = m.removedRooms.filter(allowed);
        const empty = m.rooms.length === 0 && m.removedRooms.length === 0;
        return !m.snapshot && empty ? undefined : m;
      },
    },
  }),
  rows(LogService, {
    streamLogs: { open: false, publishes: false, role: "admin" },
  }),
  rows(Health, { check: OPEN, watch: OPEN }),
  rows(ServerReflectionV1, { serverReflectionInfo: OPEN }),
  rows(ServerReflectionV1alpha, { serverReflectionInfo: OPEN }),
];

/** Every service on the router, in the table's order: health's statuses, reflection's list. */
export const SERVICES: readonly DescService[] = TABLE.map((t) => t.service);

/** Every method's policy, by its generated descriptor. */
export const METHOD_POLICIES: ReadonlyMap<DescMethod, MethodPolicy> = new Map(
  TABLE.flatMap((t) => t.policies).map((p) => [p.method, p]),
);

/**
 * The policy of `method`, or undefined for a method of no service in {@link SERVICES} (such a
 * method is treated as the strictest row: a token needed, counted in the limits, no rules).
 */
export function policyOf(method: DescMethod): MethodPolicy | undefined {
  return METHOD_POLICIES.get(method);
}

function rows<S extends DescService>(
  service: S,
  byName: ServiceRows<S>,
): { service: S; policies: MethodPolicy[] } {
  const policies = service.methods.map((method): MethodPolicy => {
    const row = (byName as Record<string, MethodRow | undefined>)[method.localName];
    if (row === undefined) throw new Error(`no policy row for ${service.typeName}.${method.name}`);
    const kind = method.methodKind;
    return {
      ...row,
      method,
      kind,
      requestStream: kind === "client_streaming" || kind === "bidi_streaming",
    };
  });
  return { service, policies };
}
