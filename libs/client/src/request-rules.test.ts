import { getOption } from "@bufbuild/protobuf";
import {
  field as fieldRules,
  ViolationsSchema,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import {
  ChatService,
  GetHistoryRequestSchema,
  MetricsRequestSchema,
  SendMessageRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { LogRequestSchema } from "@switchboard/proto/gen/chat/log_pb";
import { describe, expect, it } from "vitest";
import { requestRulesInterceptor, roomNameProblem, ruleUpperBound } from "./request-rules.js";

// The pattern as chat.proto writes it, read from the generated descriptor: the client holds no
// copy of it.
const rules = getOption(SendMessageRequestSchema.field.room, fieldRules);
const pattern = rules.type.case === "string" ? rules.type.value.pattern : undefined;

describe("roomNameProblem", () => {
  it("accepts what the contract's room rule accepts, and words a refusal as the server does", () => {
    expect(pattern).toBe("^[A-Za-z0-9._-]{1,64}$");
    for (const ok of ["general", "a.b_c-D9", "x".repeat(64)])
      expect(roomNameProblem(ok)).toBe(undefined);
    for (const bad of ["no spaces!", "x".repeat(65), "é", "a/b"]) {
      expect(roomNameProblem(bad)).toBe(
        `room: does not match regex pattern \`${pattern}\` [string.pattern]`,
      );
    }
    expect(roomNameProblem("")).toBe("room: value is required [required]");
  });
});

describe("requestRulesInterceptor", () => {
  it("refuses a unary request that breaks a rule before it is sent, with the server's answer", async () => {
    const sent: string[] = [];
    const transport = createRouterTransport(
      (router) =>
        router.service(ChatService, {
          sendMessage(req) {
            sent.push(req.room);
            return {};
          },
        }),
      { transport: { interceptors: [requestRulesInterceptor()] } },
    );
    const chat = createClient(ChatService, transport);
    const err = await chat.sendMessage({ room: "no spaces!", user: "u", content: "x" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toBe(
      `room: does not match regex pattern \`${pattern}\` [string.pattern]`,
    );
    expect(err?.findDetails(ViolationsSchema)[0]?.violations[0]?.ruleId).toBe("string.pattern");
    expect(sent).toEqual([]);
    await chat.sendMessage({ room: "fine", user: "u", content: "x" });
    expect(sent).toEqual(["fine"]);
  });
});

describe("ruleUpperBound", () => {
  it("reads an integer field's lte rule from the descriptor", () => {
    expect(ruleUpperBound(GetHistoryRequestSchema.field.limit)).toBe(500);
    expect(ruleUpperBound(MetricsRequestSchema.field.intervalSeconds)).toBe(3600);
    expect(ruleUpperBound(LogRequestSchema.field.backlog)).toBe(1000);
    expect(() => ruleUpperBound(SendMessageRequestSchema.field.room)).toThrow(/no lte rule/);
  });
});
