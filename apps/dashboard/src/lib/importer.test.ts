import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it } from "vitest";
import { IMPORT_CONCURRENCY, Importer, parseJsonLines } from "./importer.svelte.ts";

const defaults = { room: "general", user: "alice", fileKey: "k1" };

describe("parseJsonLines", () => {
  it("reads protobuf JSON per line, fills defaults and derives stable ids", () => {
    const text = [
      '{"user":"ada","content":"hello","room":"ops"}',
      "",
      '{"content":"no room or user","client_message_id":"given"}',
      "not json",
      '{"content": 5}',
    ].join("\n");
    const { lines, failures } = parseJsonLines(text, defaults);
    expect(lines).toEqual([
      { line: 1, room: "ops", user: "ada", content: "hello", clientMessageId: "import-k1-1" },
      {
        line: 3,
        room: "general",
        user: "alice",
        content: "no room or user",
        clientMessageId: "given",
      },
    ]);
    expect(failures.map((f) => f.line)).toEqual([4, 5]);
  });

  it("refuses a line with a key the schema lacks instead of dropping its idempotency key", () => {
    const { lines, failures } = parseJsonLines(
      '{"content":"typo","clientMessageID":"k-1"}\n{"content":"fine","clientMessageId":"k-2"}',
      defaults,
    );
    expect(lines.map((l) => l.clientMessageId)).toEqual(["k-2"]);
    expect(failures).toHaveLength(1);
    expect(failures[0]?.line).toBe(1);
    expect(failures[0]?.reason).toContain("clientMessageID");
  });
});

describe("Importer", () => {
  it("sends every line with unary calls, a bounded number in flight, and reports failures", async () => {
    let inFlight = 0;
    let most = 0;
    const received: string[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(ChatService, {
        async sendMessage(req) {
          inFlight++;
          most = Math.max(most, inFlight);
          await new Promise((resolve) => setTimeout(resolve, 2));
          inFlight--;
          if (req.content === "")
            throw new ConnectError("content is required", Code.InvalidArgument);
          received.push(req.content);
          return {};
        },
      });
    });
    const text = Array.from({ length: 50 }, (_, i) =>
      JSON.stringify({ content: i === 7 ? "" : `m${i}` }),
    ).join("\n");
    const importer = new Importer();
    await importer.run(createClient(ChatService, transport), text, defaults);

    expect(importer.total).toBe(50);
    expect(importer.sent).toBe(49);
    expect(importer.failedCount).toBe(1);
    expect(importer.failures).toEqual([
      { line: 8, reason: "invalid_argument: content is required" },
    ]);
    expect(importer.finished).toBe(true);
    expect(received).toHaveLength(49);
    expect(most).toBeLessThanOrEqual(IMPORT_CONCURRENCY);
    expect(most).toBeGreaterThan(1);
  });
});
