import { MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it } from "vitest";
import { kindOfCode, MESSAGE_KIND_CODES } from "./message-kind-codes.js";

describe("the stored codes of message kinds", () => {
  it("are chat.MessageType's numbers, which databases written before hold", () => {
    expect(MESSAGE_KIND_CODES).toEqual({
      chat: MessageType.CHAT,
      join: MessageType.JOIN,
      leave: MessageType.LEAVE,
    });
    for (const [kind, code] of Object.entries(MESSAGE_KIND_CODES)) {
      expect(kindOfCode(code)).toBe(kind);
    }
  });

  it("refuse a code no kind is stored as (SYSTEM is never stored)", () => {
    expect(() => kindOfCode(MessageType.SYSTEM)).toThrow("unknown type code 3");
  });
});
