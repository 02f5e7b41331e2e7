// SubscribeRequest.watch_only on every protocol: the stream receives the room's messages, but
// stores no JOIN or LEAVE and does not list its user as a member, while a joined subscriber
// beside it does all three.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { chatClient, TRANSPORT_CASES, uniqueRoom, within } from "./support.js";

describe("SubscribeMessages with watch_only", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    // No presence grace: a joined user's LEAVE is stored as soon as its stream ends.
    server = await startServer({ store: "memory", env: { PRESENCE_GRACE_MS: "0" } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it.each(TRANSPORT_CASES.map((tc) => [tc.name, tc] as const))(
    "%s: follows the room without joining it",
    async (_name, tc) => {
      const room = uniqueRoom(`watch-${tc.name}`);
      const client = chatClient(server.baseUrl, tc);
      const watcher = new AbortController();
      const stream = client.subscribeMessages(
        { room, user: "olive", watchOnly: true },
        { signal: watcher.signal },
      );
      const it = stream[Symbol.asyncIterator]();
      const welcome = await within(it.next(), 5_000, "the watcher's welcome");
      expect(welcome.value?.content).toBe(`Welcome to room ${room}, olive!`);
      const joined = new AbortController();
      const member = client.subscribeMessages({ room, user: "jim" }, { signal: joined.signal });
      const memberIt = member[Symbol.asyncIterator]();
      await within(memberIt.next(), 5_000, "the member's welcome");
      await client.sendMessage({ room, user: "bob", content: "hello" });

      // The watcher sees jim's JOIN and bob's message; nobody sees a JOIN of olive's.
      const seen: string[] = [];
      while (!seen.includes("bob: hello")) {
        const next = await within(it.next(), 5_000, "the watcher's next message");
        seen.push(`${next.value?.user}: ${next.value?.content}`);
      }
      expect(seen).toEqual(["jim: jim joined", "bob: hello"]);
      const { members } = await client.listMembers({ room });
      expect(members.map((m) => m.user)).toEqual(["jim"]);

      watcher.abort();
      joined.abort();
      await it.return?.();
      await memberIt.return?.().catch(() => {});
      // jim's LEAVE comes; olive's never does.
      let history = await client.getHistory({ room, limit: 10 });
      const deadline = Date.now() + 5_000;
      while (history.messages.length < 3 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        history = await client.getHistory({ room, limit: 10 });
      }
      expect(history.messages.map((m) => `${m.user}: ${m.content}`)).toEqual([
        "jim: jim joined",
        "bob: hello",
        "jim: jim left",
      ]);
    },
  );
});
