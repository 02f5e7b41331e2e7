import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { MessageSchema, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { LogEntrySchema, LogLevel } from "@switchboard/proto/gen/chat/log_pb";
import { describe, expect, it } from "vitest";
import { codeName } from "./cli-error.js";
import { parseUploadLine } from "./commands/upload-command.js";
import {
  formatHistoryReset,
  formatLabels,
  formatLogEntry,
  formatMessage,
  formatTable,
  printable,
} from "./format.js";

const at = timestampFromDate(new Date(2026, 10, 21, 9, 5, 7));

function message(init: MessageInitShape<typeof MessageSchema>) {
  return create(MessageSchema, { room: "general", user: "alice", timestamp: at, ...init });
}

describe("formatMessage", () => {
  it("tells chat, JOIN, LEAVE and SYSTEM apart", () => {
    expect(formatMessage(message({ offset: 12n, content: "hi" }))).toBe(
      "[general #12 09:05:07] alice: hi",
    );
    expect(
      formatMessage(message({ offset: 13n, type: MessageType.JOIN, content: "alice joined" })),
    ).toBe("[general #13 09:05:07] --> alice joined");
    expect(
      formatMessage(message({ offset: 14n, type: MessageType.LEAVE, content: "alice left" })),
    ).toBe("[general #14 09:05:07] <-- alice left");
    // Unstored: no offset shown.
    expect(
      formatMessage(message({ user: "System", type: MessageType.SYSTEM, content: "Welcome" })),
    ).toBe("[general 09:05:07] *** System: Welcome");
  });

  it("keeps someone else's control characters from reaching the terminal", () => {
    const line = formatMessage(message({ offset: 1n, content: "a\u001b[2Jb\nforged" }));
    expect(line).toBe("[general #1 09:05:07] alice: a\\u001b[2Jb\\nforged");
    expect(printable("tab\there")).toBe("tab\\there");
  });
});

describe("formatLogEntry", () => {
  const entry = (message: string, fields: Record<string, unknown>, level = LogLevel.INFO) =>
    create(LogEntrySchema, { time: at, level, message, fields: fields as never });

  it("reads an RPC's access line as method, code, duration, user and reason, not JSON", () => {
    const failed = entry("rpc", {
      method: "/chat.ChatService/GetHistory",
      protocol: "grpc",
      code: "InvalidArgument",
      durationMs: 0.42,
      peer: "127.0.0.1:5000",
      requestId: "r-1",
      user: "ann",
      error: 'room "a b" is not a room name',
    });
    expect(formatLogEntry(failed)).toBe(
      '09:05:07.000 INFO  GetHistory InvalidArgument 0.42 ms user=ann error="room \\"a b\\" is not a room name" service=chat.ChatService protocol=grpc peer=127.0.0.1:5000 requestId=r-1',
    );
    const ok = entry("rpc", { method: "/chat.ChatService/ListRooms", code: "OK", durationMs: 1 });
    expect(formatLogEntry(ok)).toBe(
      "09:05:07.000 INFO  ListRooms OK 1 ms service=chat.ChatService",
    );
  });

  it("shows any other line's fields as key=value, objects as JSON, control characters escaped", () => {
    const line = entry(
      "redis unavailable",
      { store: "redis", since: { at: 1 }, note: "a\u001b[2Jb" },
      LogLevel.WARN,
    );
    expect(formatLogEntry(line)).toBe(
      '09:05:07.000 WARN  redis unavailable store=redis since={"at":1} note=a\\u001b[2Jb',
    );
  });
});

describe("tables and labels", () => {
  it("pads every column but the last", () => {
    expect(
      formatTable([
        ["ROOM", "N"],
        ["a-long-name", "1"],
      ]),
    ).toEqual(["ROOM         N", "a-long-name  1"]);
  });

  it("sorts labels by key", () => {
    expect(formatLabels({ unit: "MiB", type: "heap" })).toBe('{type="heap",unit="MiB"}');
    expect(formatLabels({})).toBe("");
  });
});

describe("codeName", () => {
  it("is the code's wire name", () => {
    expect(codeName(Code.InvalidArgument)).toBe("invalid_argument");
    expect(codeName(Code.Unavailable)).toBe("unavailable");
    expect(codeName(Code.DeadlineExceeded)).toBe("deadline_exceeded");
  });
});

describe("parseUploadLine", () => {
  it("reads camelCase and snake_case names and skips blank lines", () => {
    const m = parseUploadLine('{"room":"r","user":"u","content":"c","client_message_id":"k"}', 1);
    expect(m).toMatchObject({ room: "r", user: "u", content: "c", clientMessageId: "k" });
    expect(parseUploadLine("   ", 2)).toBeUndefined();
  });

  it("names the line of bad JSON, a non-object and an unknown field", () => {
    expect(() => parseUploadLine("{oops", 7)).toThrow(/^line 7: invalid JSON/);
    expect(() => parseUploadLine("[1,2]", 8)).toThrow(/^line 8: expected an object/);
    expect(() => parseUploadLine('{"room":"r","colour":"red"}', 9)).toThrow(
      /^line 9: .*"colour" is unknown/,
    );
    // A misspelt idempotency key is an error, not a line uploaded without its key.
    expect(() => parseUploadLine('{"room":"r","content":"c","clientMessageID":"k"}', 10)).toThrow(
      /^line 10: .*"clientMessageID" is unknown/,
    );
  });
});

describe("formatHistoryReset", () => {
  const reset = {
    room: "general",
    staleEpoch: "OldOldOldOld",
    staleOffset: 50n,
    epoch: "NewNewNewNew",
    firstOffset: 1n,
    lastOffset: 61n,
    error: new ConnectError("history of room general was reset", Code.FailedPrecondition),
  };
  it("says which log is gone, where the room's log stands, and what the client does next", () => {
    expect(formatHistoryReset(reset, "start")).toBe(
      "history of room general was reset: epoch OldOldOldOld (this client was at offset 50) is gone; the room's log is now epoch NewNewNewNew, offsets 1 to 61; following it from its start",
    );
    expect(formatHistoryReset({ ...reset, epoch: "", lastOffset: 0n }, "end")).toBe(
      "history of room general was reset: epoch OldOldOldOld (this client was at offset 50) is gone; the room has no messages now; following its new messages only",
    );
  });
  it("tells offsets that went back in the same epoch", () => {
    expect(formatHistoryReset({ ...reset, epoch: "OldOldOldOld", lastOffset: 40n }, "stop")).toBe(
      "history of room general was reset: its offsets went back below 50, where this client was; the room's log is now epoch OldOldOldOld, offsets 1 to 40; stopping",
    );
  });
});
