import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { ChatService, HistoryResetSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, test } from "vitest";
import {
  FeedInterruptedError,
  HistoryResetError,
  OffsetOutOfRangeError,
  SlowSubscriberError,
  ValidationError,
} from "../../domain/errors.js";
import { StoreUnavailableError } from "../../store/message-store.js";
import { createErrorInterceptor, toConnectError } from "./errors.js";

describe("toConnectError", () => {
  test("the domain's errors get their codes; a ConnectError passes as it is", () => {
    const same = new ConnectError("x", Code.PermissionDenied);
    expect(toConnectError(same)).toBe(same);
    expect(toConnectError(new ValidationError("room", "room is required"), "message 2: ")).toEqual(
      new ConnectError("message 2: room is required", Code.InvalidArgument),
    );
    expect(toConnectError(new SlowSubscriberError(8))).toEqual(
      new ConnectError(
        "slow consumer: more than 8 items behind (SUBSCRIBER_QUEUE_LIMIT)",
        Code.ResourceExhausted,
      ),
    );
    expect(toConnectError(new SlowSubscriberError(8).resumingFrom(7))).toEqual(
      new ConnectError("slow consumer; resume from offset 7", Code.ResourceExhausted),
    );
    expect(toConnectError(new FeedInterruptedError("connection lost").resumingFrom(3))).toEqual(
      new ConnectError(
        "store unavailable (connection lost); resume from offset 3",
        Code.Unavailable,
      ),
    );
    const position = { room: "r", epoch: "AbCdEfGhIjKl", firstOffset: 1, lastOffset: 4 };
    const outOfRange = toConnectError(new OffsetOutOfRangeError(9, position));
    expect(outOfRange.code).toBe(Code.OutOfRange);
    expect(outOfRange.rawMessage).toBe("since_offset 9 is beyond the room's last offset 4");
    const reset = toConnectError(new HistoryResetError("OldOldOldOld", position));
    expect(reset.code).toBe(Code.FailedPrecondition);
    expect(reset.rawMessage).toBe(
      "history of room r was reset (epoch OldOldOldOld is gone): its log is now epoch AbCdEfGhIjKl, offsets 1 to 4",
    );
    // Each carries where the log stands, as a typed detail (chat.HistoryReset).
    for (const err of [outOfRange, reset]) {
      expect(err.findDetails(HistoryResetSchema)).toEqual([
        create(HistoryResetSchema, {
          room: "r",
          epoch: "AbCdEfGhIjKl",
          firstOffset: 1n,
          lastOffset: 4n,
        }),
      ]);
    }
    expect(toConnectError(new StoreUnavailableError("redis unavailable: x")).code).toBe(
      Code.Unavailable,
    );
    const abort = new DOMException("This operation was aborted", "AbortError");
    expect(toConnectError(abort).code).toBe(Code.Canceled);
  });

  test("anything else is Internal 'internal error', the error kept as the cause", () => {
    const cause = Object.assign(new Error("SQLITE_CORRUPT: database disk image is malformed"), {
      code: "SQLITE_CORRUPT",
    });
    const mapped = toConnectError(cause);
    expect(mapped.code).toBe(Code.Internal);
    expect(mapped.rawMessage).toBe("internal error");
    expect(mapped.cause).toBe(cause);
    expect(toConnectError("a string").rawMessage).toBe("internal error");
  });
});

describe("createErrorInterceptor", () => {
  // A service whose implementations fail as a careless handler would: plain errors, thrown on
  // call or while the response stream is read.
  const transport = createRouterTransport(
    (router) =>
      router.service(ChatService, {
        async sendMessage() {
          throw new Error("raw text from a library");
        },
        async *chat() {
          yield { content: "first" };
          throw new SlowSubscriberError(8);
        },
        async *streamMetrics() {
          yield* [];
          throw new TypeError("x is undefined");
        },
      }),
    { router: { interceptors: [createErrorInterceptor()] } },
  );
  const client = createClient(ChatService, transport);

  test("a unary call's plain error: Internal 'internal error'", async () => {
    const err = await client.sendMessage({}).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect([err?.code, err?.rawMessage]).toEqual([Code.Internal, "internal error"]);
  });

  test("a response stream's errors are mapped as they are read", async () => {
    const received: string[] = [];
    const err = await (async () => {
      for await (const m of client.chat((async function* () {})())) received.push(m.content);
    })().catch((e: unknown) => ConnectError.from(e));
    expect(received).toEqual(["first"]);
    expect([err?.code, err?.rawMessage]).toEqual([
      Code.ResourceExhausted,
      "slow consumer: more than 8 items behind (SUBSCRIBER_QUEUE_LIMIT)",
    ]);
    const metrics = await (async () => {
      for await (const _ of client.streamMetrics({})) {
        // none
      }
    })().catch((e: unknown) => ConnectError.from(e));
    expect([metrics?.code, metrics?.rawMessage]).toEqual([Code.Internal, "internal error"]);
  });
});
