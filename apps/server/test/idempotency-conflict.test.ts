// A client_message_id reused in a room for a different message, as peers we did not write see it:
// @grpc/grpc-js (contract loaded at run time by proto-loader) on SendMessage, UploadMessages and
// Chat, and the Connect protocol's JSON over plain fetch. On SQLite, SQLite shared by the workers
// of WORKERS=2, and Redis (where redis-server is installed).
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { RedisServer } from "./redis-server.js";
import { grpcJsChatClient, uniqueRoom, within } from "./support.js";
import { skipWithout } from "./tools.js";

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void;
interface Sent {
  message_id: string;
  offset: string;
  duplicate: boolean;
}
interface ChatClient extends grpc.Client {
  SendMessage(req: object, cb: Callback<Sent>): grpc.ClientUnaryCall;
  UploadMessages(cb: Callback<{ message_count: number }>): grpc.ClientWritableStream<object>;
  Chat(): grpc.ClientDuplexStream<object, { content: string; offset: string }>;
}

/** What a peer is told when `key` was first used in `room` for message #offset by `user`. */
const refusal = (key: string, room: string, offset: number, user: string) =>
  `client_message_id "${key}" was already used in room ${room} for a different message ` +
  `(#${offset} by ${user}); use a new key for a new message`;

const noRedis = skipWithout("redis-server");
const cases: Array<[string, () => Promise<Record<string, string>>]> = [
  ["sqlite", async () => ({})],
  ["sqlite, WORKERS=2", async () => ({ WORKERS: "2" })],
];
let redis: RedisServer | undefined;
if (!noRedis) cases.push(["redis", async () => ({ STORE: (await redisServer()).url })]);
async function redisServer(): Promise<RedisServer> {
  redis ??= await RedisServer.start();
  return redis;
}
afterAll(async () => {
  await redis?.close();
});

describe.each(cases)("a reused client_message_id (%s)", (_name, env) => {
  let server: ServerProcess;
  let client: ChatClient;

  beforeAll(async () => {
    server = await startServer({ env: await env() });
    client = grpcJsChatClient<ChatClient>(server.port);
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
  });

  const send = (req: object) =>
    within(
      new Promise<Sent>((resolve, reject) =>
        client.SendMessage(req, (err, res) => (err === null ? resolve(res as Sent) : reject(err))),
      ),
      5_000,
      "SendMessage answers",
    );
  /** SendMessage over the Connect protocol with JSON: status and body as a peer reads them. */
  const sendJson = async (req: object) => {
    const res = await fetch(`${server.baseUrl}/chat.ChatService/SendMessage`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(req),
      signal: AbortSignal.timeout(5_000),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  test("SendMessage: the same message is a duplicate, another is ALREADY_EXISTS", async () => {
    const room = uniqueRoom("idem");
    await send({ room, user: "bob", content: "first" });
    const keyed = { room, user: "alice", content: "hello", client_message_id: "k1" };
    const sent = await send(keyed);
    expect([sent.offset, sent.duplicate]).toEqual(["2", false]);
    const retry = await send(keyed);
    expect(retry).toEqual({ ...sent, duplicate: true });

    // Other content, another user: refused, over gRPC …
    for (const changed of [{ content: "hello!" }, { user: "mallory" }]) {
      const err = await send({ ...keyed, ...changed }).then(
        () => expect.fail("a reused key was accepted"),
        (e: grpc.ServiceError) => e,
      );
      expect([grpc.status[err.code], err.details]).toEqual([
        "ALREADY_EXISTS",
        refusal("k1", room, 2, "alice"),
      ]);
    }
    // … and over Connect JSON (HTTP 409), where the retry also says `duplicate`.
    const json = { room, user: "alice", content: "other", clientMessageId: "k1" };
    expect(await sendJson(json)).toEqual({
      status: 409,
      body: { code: "already_exists", message: refusal("k1", room, 2, "alice") },
    });
    expect(await sendJson({ ...json, content: "hello" })).toMatchObject({
      status: 200,
      body: { offset: "2", messageId: sent.message_id, duplicate: true },
    });
    // Nothing more was stored.
    expect((await send({ room, user: "bob", content: "last" })).offset).toBe("3");
  });

  test("UploadMessages ends with ALREADY_EXISTS at the reused key; the messages before stay", async () => {
    const room = uniqueRoom("idem-upload");
    await send({ room, user: "alice", content: "hello", client_message_id: "k1" });
    const done = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.UploadMessages((err) => resolve(err));
      call.write({ room, user: "carol", content: "fine", client_message_id: "k2" });
      call.write({ room, user: "carol", content: "not hello", client_message_id: "k1" });
      call.end();
    });
    const err = await within(done, 5_000, "UploadMessages answers");
    expect([err && grpc.status[err.code], err?.details]).toEqual([
      "ALREADY_EXISTS",
      refusal("k1", room, 1, "alice"),
    ]);
    const retry = await send({ room, user: "carol", content: "fine", client_message_id: "k2" });
    expect([retry.offset, retry.duplicate]).toEqual(["2", true]);
  });

  test("Chat ends with ALREADY_EXISTS at the reused key", async () => {
    const room = uniqueRoom("idem-chat");
    await send({ room, user: "alice", content: "hello", client_message_id: "k1" });
    const call = client.Chat();
    const ended = new Promise<grpc.ServiceError>((resolve, reject) => {
      call.on("data", () => {});
      call.on("error", resolve);
      call.on("end", () => reject(new Error("Chat ended without an error")));
    });
    call.write({ room, user: "dave", content: "hi", client_message_id: "k1" });
    const err = await within(ended, 5_000, "Chat ends with an error");
    expect([grpc.status[err.code], err.details]).toEqual([
      "ALREADY_EXISTS",
      refusal("k1", room, 1, "alice"),
    ]);
  });
});
