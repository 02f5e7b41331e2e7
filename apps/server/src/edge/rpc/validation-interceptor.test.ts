import { create, type DescMessage, getOption, hasOption, toJsonString } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import {
  FieldRulesSchema,
  field as fieldRules,
  ViolationsSchema,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import {
  ChatService,
  file_chat_chat,
  ListMembersRequestSchema,
  MessageSchema,
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { describe, expect, it } from "vitest";
import { createRequestValidator, createValidationInterceptors } from "./validation-interceptor.js";

const LIMITS = { maxContentBytes: 16, maxUserBytes: 8 };
const ROOM_RULE = "room: does not match regex pattern `^[A-Za-z0-9._-]{1,64}$` [string.pattern]";

/** Handlers that record what reached them. */
function setup() {
  const reached: string[] = [];
  const transport = createRouterTransport(
    (router) => {
      router.service(ChatService, {
        sendMessage(req) {
          reached.push(`send ${req.content}`);
          return {};
        },
        async uploadMessages(requests) {
          for await (const m of requests) reached.push(`upload ${m.content}`);
          return {};
        },
        async *streamMetrics() {},
      });
      router.service(LogService, { async *streamLogs() {} });
    },
    { router: { interceptors: createValidationInterceptors(LIMITS) } },
  );
  return {
    reached,
    chat: createClient(ChatService, transport),
    logs: createClient(LogService, transport),
  };
}

async function errorOf(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected a failure");
}

/** The Violations detail as (field, rule id) pairs. */
function violations(err: ConnectError): string[] {
  return err
    .findDetails(ViolationsSchema)
    .flatMap((v) => v.violations)
    .map((v) => `${v.field?.elements.map((e) => e.fieldName).join(".")} ${v.ruleId}`);
}

describe("createValidationInterceptors", () => {
  it("refuses a request that breaks a schema rule: InvalidArgument, the Violations detail, no handler", async () => {
    const { chat, reached } = setup();
    const err = await errorOf(chat.sendMessage({ room: "a b", user: "u", content: "" }));
    expect([err.code, err.rawMessage]).toEqual([
      Code.InvalidArgument,
      "content: value is required [required], and 1 more violation",
    ]);
    expect(violations(err)).toEqual(["content required", "room string.pattern"]);
    expect(reached).toEqual([]);
  });

  it("refuses a request over a setting's limit (within the schema's ceiling), naming the limit", async () => {
    const { chat, reached } = setup();
    const long = await errorOf(chat.sendMessage({ room: "r", user: "u", content: "x".repeat(17) }));
    expect([long.code, long.rawMessage]).toEqual([
      Code.InvalidArgument,
      "content is 17 bytes, over MAX_CONTENT_BYTES (16)",
    ]);
    expect(violations(long)).toEqual([]);
    expect(reached).toEqual([]);
    await chat.sendMessage({ room: "r", user: "u", content: "fine" });
    expect(reached).toEqual(["send fine"]);
  });

  it("names the index of a bad message in a client stream, with its detail; earlier ones were handled", async () => {
    const { chat, reached } = setup();
    async function* messages() {
      yield create(MessageSchema, { room: "r", user: "u", content: "first" });
      yield create(MessageSchema, { room: "r", user: "u", content: "second" });
      yield create(MessageSchema, { room: "no room!", user: "u", content: "third" });
    }
    const err = await errorOf(chat.uploadMessages(messages()));
    expect([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, `message 2: ${ROOM_RULE}`]);
    expect(violations(err)).toEqual(["room string.pattern"]);
    expect(reached).toEqual(["upload first", "upload second"]);

    async function* overLimit() {
      yield create(MessageSchema, { room: "r", user: "u", content: "ok" });
      yield create(MessageSchema, { room: "r", user: "u", content: "x".repeat(17) });
    }
    const limit = await errorOf(chat.uploadMessages(overLimit()));
    expect(limit.rawMessage).toBe("message 1: content is 17 bytes, over MAX_CONTENT_BYTES (16)");
  });

  it("checks server-stream requests: interval and backlog bounds", async () => {
    const { chat, logs } = setup();
    const metrics = await errorOf(
      (async () => {
        for await (const _ of chat.streamMetrics({ intervalSeconds: 3601 })) break;
      })(),
    );
    expect(metrics.code).toBe(Code.InvalidArgument);
    expect(violations(metrics)).toEqual(["interval_seconds int32.gte_lte"]);
    const backlog = await errorOf(
      (async () => {
        for await (const _ of logs.streamLogs({ backlog: 1001 })) break;
      })(),
    );
    expect([backlog.code, backlog.rawMessage]).toEqual([
      Code.InvalidArgument,
      "backlog: must be less than or equal to 1000 [uint32.lte]",
    ]);
  });
});

describe("createRequestValidator", () => {
  // The server matches the schema's patterns with RegExp; protovalidate's default is RE2. They
  // must agree on every value, valid or not, that the rules are about.
  const rooms = ["general", "a.b_c-D9", "", "a b", "x".repeat(64), "x".repeat(65), "é", "room\n"];
  const users = [
    "alice",
    "日本語",
    "a b",
    "   ",
    "\u00a0\u3000",
    "a\u0007b",
    "tab\there",
    "\u{1F600}",
    "del\u007f",
    " x ",
  ];
  const cases: [DescMessage, Record<string, unknown>][] = [
    ...rooms.map((room): [DescMessage, Record<string, unknown>] => [
      ListMembersRequestSchema,
      { room },
    ]),
    ...users.map((user): [DescMessage, Record<string, unknown>] => [
      SubscribeRequestSchema,
      { room: "r", user },
    ]),
    ...users.map((user): [DescMessage, Record<string, unknown>] => [
      SendMessageRequestSchema,
      { room: "r", user, content: "c" },
    ]),
  ];
  it("agrees with protovalidate's default RE2 engine on the schema's patterns", () => {
    const ours = createRequestValidator();
    const re2 = createValidator();
    const verdicts = cases.map(([schema, init]) => {
      const message = create(schema, init);
      const a = ours.validate(schema, message);
      const b = re2.validate(schema, message);
      expect(a.kind, JSON.stringify(init)).toBe(b.kind);
      return a.kind;
    });
    // Not all one way: the cases do test both sides of each pattern.
    expect(verdicts.filter((k) => k === "valid").length).toBe(13);
    expect(verdicts.filter((k) => k === "invalid").length).toBe(cases.length - 13);
  });
});

describe("the schema's rules", () => {
  // chat.proto writes the same rules on every request's room, user and content (standard rules,
  // checked natively, rather than one predefined CEL rule: see "Request rules" there); they must
  // not drift apart.
  it("are the same on every room, user and content field of the contract", () => {
    const rulesOf = (name: string) =>
      file_chat_chat.messages
        .flatMap((m) => m.fields)
        .filter((f) => f.name === name && hasOption(f, fieldRules))
        .map((f) => [f.parent.typeName, toJsonString(FieldRulesSchema, getOption(f, fieldRules))]);
    for (const name of ["room", "user", "content", "client_message_id"]) {
      const rules = rulesOf(name);
      expect(rules.length, name).toBeGreaterThanOrEqual(2);
      expect(new Set(rules.map(([, r]) => r)).size, JSON.stringify(rules)).toBe(1);
    }
    expect(rulesOf("room").map(([m]) => m)).toEqual([
      "chat.SendMessageRequest",
      "chat.SubscribeRequest",
      "chat.Message",
      "chat.GetHistoryRequest",
      "chat.ListMembersRequest",
    ]);
  });
});
