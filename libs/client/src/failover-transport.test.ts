import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { ChatService, MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it } from "vitest";
import { createFailoverTransport } from "./failover-transport.js";

/** A node that answers with its name, or fails every call with `failWith`. */
function node(name: string, state: { failWith?: Code | undefined }) {
  return createRouterTransport(({ service }) => {
    service(ChatService, {
      sendMessage() {
        if (state.failWith !== undefined) throw new ConnectError("down", state.failWith);
        return { messageId: name };
      },
      async *subscribeMessages() {
        yield create(MessageSchema, { content: `${name} 1` });
        if (state.failWith !== undefined) throw new ConnectError("node died", state.failWith);
        yield create(MessageSchema, { content: `${name} 2` });
      },
    });
  });
}

describe("createFailoverTransport", () => {
  it("stays on a healthy node and moves on when it fails, but not for the caller's mistakes", async () => {
    const a = { failWith: undefined as Code | undefined };
    const client = createClient(
      ChatService,
      createFailoverTransport([node("a", a), node("b", {})]),
    );
    expect((await client.sendMessage({})).messageId).toBe("a");
    a.failWith = Code.InvalidArgument;
    await expect(client.sendMessage({})).rejects.toMatchObject({ code: Code.InvalidArgument });
    expect((await client.sendMessage({}).catch(() => ({ messageId: "a (still)" }))).messageId).toBe(
      "a (still)",
    );
    a.failWith = Code.Unavailable;
    await expect(client.sendMessage({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect((await client.sendMessage({})).messageId).toBe("b");
  });

  it("moves on when a stream breaks mid-way, and wraps around", async () => {
    const a = { failWith: Code.Unavailable as Code | undefined };
    const b = { failWith: Code.Unavailable as Code | undefined };
    const client = createClient(ChatService, createFailoverTransport([node("a", a), node("b", b)]));
    const read = async () => {
      const seen: string[] = [];
      try {
        for await (const m of client.subscribeMessages({})) seen.push(m.content);
      } catch (err) {
        seen.push(ConnectError.from(err).code === Code.Unavailable ? "unavailable" : "other");
      }
      return seen;
    };
    expect(await read()).toEqual(["a 1", "unavailable"]);
    expect(await read()).toEqual(["b 1", "unavailable"]);
    a.failWith = undefined;
    expect(await read()).toEqual(["a 1", "a 2"]);
  });
});
