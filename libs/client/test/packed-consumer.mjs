// A program of someone else's project, run by plain `node` (no TypeScript, no tsx) after
// `npm install switchboard-client-0.1.0.tgz @connectrpc/connect-node`. packed.test.ts
// copies it into a fresh project with the packed tarballs installed, and drives it: it prints
// "restart me" when its subscription is live, waits for a line on stdin (the server has been
// restarted), and ends by printing one JSON report.
import { createInterface } from "node:readline";
import { create, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createChatSession,
  createNodeTransport,
  subscribeResumable,
} from "@switchboard/client/node";
import {
  ChatService,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
} from "@switchboard/client/proto";

const baseUrl = process.env.SWITCHBOARD_URL;
const room = process.env.ROOM;
const client = createClient(ChatService, createNodeTransport({ baseUrl }));
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const report = {};

// 1. An idempotent send: the same client_message_id twice stores one message.
const request = create(SendMessageRequestSchema, {
  room,
  user: "script",
  content: "exactly once",
  clientMessageId: "packed-1",
});
const first = await client.sendMessage(request);
const second = await client.sendMessage(request);
report.idempotent = [first, second].map((r) => toJson(SendMessageResponseSchema, r));

// 2. A resumable subscription across a server restart.
const seen = [];
const states = [];
const done = new AbortController();
let live;
const isLive = new Promise((resolve) => {
  live = resolve;
});
// Aborting ends the loop without an error, and the welcome is not among the messages.
const subscription = (async () => {
  for await (const m of subscribeResumable(
    client,
    { room, user: "follower", sinceOffset: 0n },
    {
      signal: done.signal,
      backoff: { initialMs: 100, maxMs: 1_000 },
      onStateChange: (state) => states.push(state),
    },
  )) {
    seen.push({ offset: Number(m.offset), content: m.content });
    if (m.offset >= first.offset) live();
    if (m.content === "after restart") done.abort();
  }
})();
await isLive;
console.log("restart me");
await stdin.next();
const after = await client.sendMessage({ room, user: "script", content: "after restart" });
await subscription;
report.subscription = { seen, states, afterOffset: Number(after.offset) };

// 3. A chat session: the backlog, its own lines once, every line acknowledged before close.
const chatRoom = `${room}-chat`;
await client.sendMessage({ room: chatRoom, user: "other", content: "backlog" });
const chat = [];
const session = createChatSession(client, {
  room: chatRoom,
  user: "script",
  backlog: 5,
  onMessage: (m) => chat.push(`${m.offset} ${m.user}: ${m.content}`),
});
const acks = await Promise.all([session.send("hello"), session.send("world")]);
await session.close();
report.chat = { lines: chat, acked: acks.map((a) => Number(a.offset)), state: session.state };

// 4. Errors keep their Connect code through the package boundary.
try {
  await client.sendMessage({ room: "no spaces", user: "script", content: "x" });
} catch (err) {
  report.error =
    ConnectError.from(err).code === Code.InvalidArgument ? "invalid_argument" : "other";
}

console.log(JSON.stringify(report));
process.exit(0);
