import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { ChatService, MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { describe, expect, it } from "vitest";
import { createValidationInterceptor } from "./validation-interceptor.js";

const LIMITS = { maxContentBytes: 16, maxUserBytes: 8 };

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
    { router: { interceptors: [createValidationInterceptor(LIMITS)] } },
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

describe("createValidationInterceptor", () => {
  it("refuses a bad unary request with InvalidArgument naming the field, before the handler", async () => {
    const { chat, reached } = setup();
    const err = await errorOf(chat.sendMessage({ room: "a b", user: "u", content: "x" }));
    expect([err.code, err.rawMessage]).toEqual([
      Code.InvalidArgument,
      "room must match [A-Za-z0-9._-]{1,64}",
    ]);
    const long = await errorOf(chat.sendMessage({ room: "r", user: "u", content: "x".repeat(17) }));
    expect(long.rawMessage).toBe("content is 17 bytes; the limit is 16");
    expect(reached).toEqual([]);
    await chat.sendMessage({ room: "r", user: "u", content: "fine" });
    expect(reached).toEqual(["send fine"]);
  });

  it("names the index of a bad message in a client stream; earlier ones were handled", async () => {
    const { chat, reached } = setup();
    async function* messages() {
      yield create(MessageSchema, { room: "r", user: "u", content: "first" });
      yield create(MessageSchema, { room: "r", user: "u", content: "" });
    }
    const err = await errorOf(chat.uploadMessages(messages()));
    expect([err.code, err.rawMessage]).toEqual([
      Code.InvalidArgument,
      "message 1: content is required",
    ]);
    expect(reached).toEqual(["upload first"]);
  });

  it("checks server-stream requests: interval and backlog bounds", async () => {
    const { chat, logs } = setup();
    const metrics = await errorOf(
      (async () => {
        for await (const _ of chat.streamMetrics({ intervalSeconds: 3601 })) break;
      })(),
    );
    expect(metrics.rawMessage).toBe("interval_seconds must be from 0 to 3600");
    const backlog = await errorOf(
      (async () => {
        for await (const _ of logs.streamLogs({ backlog: 1001 })) break;
      })(),
    );
    expect([backlog.code, backlog.rawMessage]).toEqual([
      Code.InvalidArgument,
      "backlog must be from 0 to 1000",
    ]);
  });
});
