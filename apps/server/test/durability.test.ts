import type { Client } from "@connectrpc/connect";
import { type SubscriptionState, subscribeResumable } from "@switchboard/client";
import { type ChatService, type Message, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import {
  Code,
  ConnectError,
  chatClient,
  Pushable,
  StreamReader,
  TRANSPORT_CASES,
  type TransportCase,
  uniqueRoom,
  within,
} from "./support.js";

// STORE=sqlite and `kill -9`: an acknowledged message survives the process, and a resumable
// subscriber that lives through the crash sees every stored offset exactly once.

// Each test has its own server (its own port and DATA_DIR); all are closed after the file.
const servers = new Set<ServerProcess>();
async function start(): Promise<ServerProcess> {
  const server = await startServer({ store: "sqlite" });
  servers.add(server);
  return server;
}

afterAll(async () => {
  await Promise.all([...servers].map((s) => s.close()));
});

const byName = (name: string): TransportCase => {
  const tc = TRANSPORT_CASES.find((t) => t.name === name);
  if (tc === undefined) throw new Error(name);
  return tc;
};

/** Every message of a room, oldest first (the rooms here stay below one 500-message page). */
async function history(client: Client<typeof ChatService>, room: string): Promise<Message[]> {
  const page = await client.getHistory({ room, limit: 500 });
  expect(page.hasMore).toBe(false);
  return page.messages;
}

/** SendMessage, retried with the same client_message_id while the server is unreachable. */
async function sendRetrying(
  client: Client<typeof ChatService>,
  req: { room: string; user: string; content: string; clientMessageId: string },
  attempts = 20,
): Promise<bigint> {
  for (let i = 1; ; i++) {
    try {
      return (await client.sendMessage(req, { timeoutMs: 5_000 })).offset;
    } catch (err) {
      if (i >= attempts || ConnectError.from(err).code !== Code.Unavailable) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe.concurrent("durability (STORE=sqlite)", () => {
  test("every acknowledged message survives kill -9, with offsets 1..N", async () => {
    const server = await start();
    const client = chatClient(server.baseUrl);
    const room = uniqueRoom("durable");
    const n = 100;
    const acked: bigint[] = [];
    for (let i = 0; i < n; i++) {
      const res = await client.sendMessage({
        room,
        user: "writer",
        content: `m${i}`,
        clientMessageId: `id-${i}`,
      });
      acked.push(res.offset);
    }
    expect(acked).toEqual(Array.from({ length: n }, (_, i) => BigInt(i + 1)));

    // The other write paths acknowledge only what is durable too: UploadMessages' response and
    // each Chat echo.
    const grpc = chatClient(server.baseUrl, byName("grpc"));
    const uploadRoom = uniqueRoom("durable-upload");
    const upload = await grpc.uploadMessages(
      (async function* () {
        for (let i = 0; i < 300; i++) yield { room: uploadRoom, user: "up", content: `u${i}` };
      })(),
    );
    expect(upload).toMatchObject({ messageCount: 300, lastOffset: 300n });
    const chatRoom = uniqueRoom("durable-chat");
    const requests = new Pushable<{ room: string; user: string; content: string }>();
    const chat = new StreamReader<Message>((signal) => grpc.chat(requests, { signal }));
    for (let i = 0; i < 20; i++)
      requests.push({ room: chatRoom, user: "chatter", content: `c${i}` });
    await chat.waitFor((m) => m.content === "Echo: c19");
    const echoed = chat.received
      .filter((m) => m.content.startsWith("Echo: "))
      .map((m) => [m.offset, m.content.slice("Echo: ".length)]);
    expect(echoed).toHaveLength(20);

    const exit = await server.kill("SIGKILL");
    expect(exit.signal).toBe("SIGKILL");
    await server.restart();

    const after = chatClient(server.baseUrl);
    const messages = await history(after, room);
    expect(messages.map((m) => Number(m.offset))).toEqual(
      Array.from({ length: n }, (_, i) => i + 1),
    );
    expect(messages.map((m) => m.content)).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    // The idempotency keys are durable too: a retry after the crash stores nothing new.
    const retry = await after.sendMessage({
      room,
      user: "writer",
      content: "m7",
      clientMessageId: "id-7",
    });
    expect(retry).toMatchObject({ offset: 8n, messageId: messages[7]?.id });
    expect((await after.sendMessage({ room, user: "writer", content: "next" })).offset).toBe(
      BigInt(n + 1),
    );

    const uploaded = await history(after, uploadRoom);
    expect(uploaded.map((m) => m.content)).toEqual(Array.from({ length: 300 }, (_, i) => `u${i}`));
    const chatted = (await history(after, chatRoom))
      .filter((m) => m.type === MessageType.CHAT)
      .map((m) => [m.offset, m.content]);
    expect(chatted).toEqual(echoed);
    await chat.ended;
  });

  // The consumer's transport varies: a broken HTTP/1.1 response and a broken HTTP/2 session
  // surface differently in connect-node, and both must lead to a resume.
  const resumeCases = TRANSPORT_CASES.filter(
    (tc) => tc.name === "connect h1.1 binary" || tc.name === "grpc",
  );
  test.each(resumeCases)(
    "a resumable subscriber ($name) sees every stored offset once across kill -9 and restart",
    async (tc: TransportCase) => {
      const running = await start();
      const room = uniqueRoom("resume");
      const producer = chatClient(running.baseUrl);
      const consumerClient = chatClient(running.baseUrl, tc);

      const received: Message[] = [];
      const states: SubscriptionState[] = [];
      const liveWelcomes: (Message | undefined)[] = [];
      const waiters = new Set<() => void>();
      const controller = new AbortController();
      const consumer = (async () => {
        try {
          for await (const m of subscribeResumable(
            consumerClient,
            { room, user: "consumer", sinceOffset: 0n },
            {
              signal: controller.signal,
              backoff: { initialMs: 100, maxMs: 400 },
              onStateChange: (state, detail) => {
                states.push(state);
                if (state === "live") liveWelcomes.push(detail?.welcome);
                for (const w of waiters) w();
              },
            },
          )) {
            received.push(m);
            for (const w of waiters) w();
          }
        } catch (err) {
          if (!controller.signal.aborted) throw err;
        }
      })();
      const untilReceived = (predicate: () => boolean, ms: number, what: string) =>
        within(
          new Promise<void>((resolve) => {
            const check = () => {
              if (!predicate()) return;
              waiters.delete(check);
              resolve();
            };
            waiters.add(check);
            check();
          }),
          ms,
          what,
        );
      const chats = () => received.filter((m) => m.content.startsWith("p")).length;

      try {
        // Phase 1: produce until the server is killed under the producer and the consumer.
        const acked = new Map<string, bigint>();
        let killed = false;
        const phase1 = (async () => {
          for (let i = 0; i < 2_000 && !killed; i++) {
            try {
              const res = await producer.sendMessage({
                room,
                user: "producer",
                content: `p1-${i}`,
                clientMessageId: `p1-${i}`,
              });
              acked.set(`p1-${i}`, res.offset);
            } catch (err) {
              // Only the crash may fail a send.
              if (!killed) throw err;
              return;
            }
          }
        })();
        await untilReceived(() => chats() >= 40, 15_000, "40 messages before the crash");
        killed = true;
        expect((await running.kill("SIGKILL")).signal).toBe("SIGKILL");
        await within(phase1, 10_000, "producer stops");
        const beforeCrash = received.length;

        await untilReceived(
          () => states.includes("reconnecting"),
          10_000,
          "the consumer notices the crash",
        );
        await running.restart();

        // Phase 2: more messages after the restart, each retried until the server is back.
        for (let i = 0; i < 30; i++) {
          const key = `p2-${i}`;
          acked.set(
            key,
            await sendRetrying(producer, {
              room,
              user: "producer",
              content: key,
              clientMessageId: key,
            }),
          );
        }
        const marker = acked.get("p2-29") as bigint;
        await untilReceived(
          () => received.some((m) => m.offset === marker),
          20_000,
          "the consumer catches up after the restart",
        );
        expect(received.length).toBeGreaterThan(beforeCrash);

        // Exactly the stored offsets, once each, in order: no gap and no duplicate.
        const stored = (await history(producer, room)).filter((m) => m.offset <= marker);
        // The consumer's own JOIN after reconnecting may land after the marker; compare up to it.
        const seen = received.filter((m) => m.offset > 0n && m.offset <= marker);
        expect(seen.map((m) => m.offset)).toEqual(stored.map((m) => m.offset));
        expect(seen.map((m) => m.id)).toEqual(stored.map((m) => m.id));
        expect(stored.map((m) => Number(m.offset))).toEqual(
          Array.from({ length: stored.length }, (_, i) => i + 1),
        );
        // Every acknowledged send is stored at the offset it was acknowledged with.
        const byKey = new Map(stored.map((m) => [m.clientMessageId, m.offset]));
        for (const [key, offset] of acked) expect(byKey.get(key), key).toBe(offset);
        // No welcome among the messages: each connection's comes with its `live` state.
        expect(received.filter((m) => m.offset === 0n)).toEqual([]);
        expect(states[0]).toBe("connecting");
        expect(liveWelcomes.length).toBeGreaterThanOrEqual(2);
        for (const welcome of liveWelcomes) {
          expect(welcome).toMatchObject({ offset: 0n, type: MessageType.SYSTEM });
        }
      } finally {
        controller.abort();
        await within(consumer, 5_000, "the consumer stops");
      }
    },
  );
});
