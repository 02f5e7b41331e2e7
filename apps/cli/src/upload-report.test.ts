import { create } from "@bufbuild/protobuf";
import { MessageSchema, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it } from "vitest";
import { reconcileUpload, type SentMessage } from "./upload-report.js";

const sent = (line: number, room: string, content: string, key = ""): SentMessage => ({
  line,
  room,
  user: "u",
  content,
  clientMessageId: key,
});
const stored = (offset: number, content: string, key = "", user = "u") =>
  create(MessageSchema, {
    room: "r",
    user,
    content,
    clientMessageId: key,
    type: MessageType.CHAT,
    offset: BigInt(offset),
  });

describe("reconcileUpload", () => {
  it("tells new from already stored, past other writers' messages", () => {
    const report = reconcileUpload(
      [sent(1, "r", "a", "k1"), sent(2, "r", "b", "k2"), sent(4, "r", "c")],
      // k2 was stored before the upload; someone else wrote between a and c.
      new Map([["r", [stored(11, "a", "k1"), stored(12, "c", "", "other"), stored(13, "c")]]]),
      3,
    );
    expect(report).toMatchObject({ processed: 3, stored: 2, alreadyStored: 1 });
    expect(report.resumeLine).toBeUndefined();
    expect(report.lastStored).toEqual(new Map([["r", 13n]]));
  });

  it("a broken stream: resumes after the last message the history shows", () => {
    const report = reconcileUpload(
      [
        sent(1, "r", "a", "k1"),
        sent(2, "r", "b", "dup"),
        sent(3, "r", "c", "k3"),
        sent(5, "r", "d"),
      ],
      new Map([["r", [stored(1, "a", "k1"), stored(2, "c", "k3")]]]),
      undefined,
    );
    expect(report).toMatchObject({ processed: 3, stored: 2, alreadyStored: 1, resumeLine: 5 });
  });

  it("the server's own count wins over what the history shows", () => {
    const report = reconcileUpload(
      [sent(1, "r", "a"), sent(2, "r", "bad"), sent(3, "r", "c")],
      new Map([["r", [stored(1, "a")]]]),
      1,
    );
    expect(report).toMatchObject({ processed: 1, stored: 1, alreadyStored: 0, resumeLine: 2 });
  });
});
