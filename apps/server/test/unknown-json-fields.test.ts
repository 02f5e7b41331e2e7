// A JSON request with a field the schema lacks is refused with invalid_argument naming the
// field, on every path that reads JSON: Switchboard's own unary and SubscribeMessages handlers
// and connect-es's (Connect GET, compressed bodies, LogService). Binary protobuf still ignores
// unknown fields, as its evolution rules require. Requests are made as curl makes them: fetch
// with a hand-written body.
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";

let server: ServerProcess;
beforeAll(async () => {
  server = await startServer({ store: "memory" });
});
afterAll(async () => {
  await server?.close();
});

const post = (method: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
  fetch(`${server.baseUrl}/chat.ChatService/${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body,
  });

async function lastOffset(room: string): Promise<string | undefined> {
  const res = await post("GetHistory", JSON.stringify({ room }));
  return ((await res.json()) as { lastOffset?: string }).lastOffset;
}

/** One Connect streaming envelope (flags 0) around `json`. */
function envelope(json: string): Uint8Array {
  const payload = new TextEncoder().encode(json);
  const out = new Uint8Array(5 + payload.length);
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

describe("unknown JSON fields", () => {
  it("a misspelt clientMessageID is invalid_argument naming it, and nothing is stored", async () => {
    const room = "typo";
    const body = JSON.stringify({ room, user: "bob", content: "hi", clientMessageID: "bob-1" });
    const res = await post("SendMessage", body);
    expect(res.status).toBe(400);
    const error = (await res.json()) as { code: string; message: string };
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toContain('key "clientMessageID" is unknown');
    expect(await lastOffset(room)).toBeUndefined();

    // Spelt right, twice: one message.
    const right = JSON.stringify({ room, user: "bob", content: "hi", clientMessageId: "bob-1" });
    const offsets = [];
    for (let i = 0; i < 2; i++) {
      const ok = await post("SendMessage", right);
      expect(ok.status).toBe(200);
      offsets.push(((await ok.json()) as { offset: string }).offset);
    }
    expect(offsets).toEqual(["1", "1"]);
  });

  it("connect-es's own paths refuse them too: Connect GET and a gzip body", async () => {
    const message = encodeURIComponent(JSON.stringify({ room: "typo", limt: 5 }));
    const get = await fetch(
      `${server.baseUrl}/chat.ChatService/GetHistory?encoding=json&message=${message}`,
    );
    expect(get.status).toBe(400);
    expect(await get.json()).toMatchObject({ code: "invalid_argument" });

    const gzipped = await post(
      "SendMessage",
      gzipSync(JSON.stringify({ room: "typo-gz", user: "a", content: "x", colour: "red" })),
      { "Content-Encoding": "gzip" },
    );
    expect(gzipped.status).toBe(400);
    expect(await gzipped.json()).toMatchObject({
      code: "invalid_argument",
      message: expect.stringContaining('"colour" is unknown'),
    });
    expect(await lastOffset("typo-gz")).toBeUndefined();
  });

  it("a SubscribeMessages request with one ends the stream with invalid_argument", async () => {
    const res = await post(
      "SubscribeMessages",
      envelope(JSON.stringify({ room: "typo", user: "carol", sinceOfset: "0" })),
      { "Content-Type": "application/connect+json", "Connect-Timeout-Ms": "10000" },
    );
    const bytes = new Uint8Array(await res.arrayBuffer());
    const text = new TextDecoder().decode(bytes.subarray(5));
    expect(bytes[0]).toBe(0b10); // the end-of-stream envelope, and nothing before it
    expect(JSON.parse(text)).toMatchObject({
      error: { code: "invalid_argument", message: expect.stringContaining('"sinceOfset"') },
    });
  });

  it("binary protobuf still ignores an unknown field number", async () => {
    const known = toBinary(
      SendMessageRequestSchema,
      create(SendMessageRequestSchema, { room: "binary", user: "a", content: "newer client" }),
    );
    // Field 99, varint 1: what a client built from a newer schema could send.
    const body = new Uint8Array([...known, 0x98, 0x06, 0x01]);
    const res = await post("SendMessage", body, { "Content-Type": "application/proto" });
    expect(res.status).toBe(200);
    expect(await lastOffset("binary")).toBe("1");
  });
});
