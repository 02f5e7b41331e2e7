import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { grpcJsChatClient, uniqueRoom, within } from "./support.js";

// The same core scenarios through an implementation that shares no code with connect-es:
// @grpc/grpc-js with the contract loaded at run time by @grpc/proto-loader (protobuf.js) from
// proto/chat/chat.proto. google/protobuf/timestamp.proto is not on disk in the repository:
// protobuf.js ships the well-known types as built-in "common" definitions, so the import
// resolves with only proto/ on includeDirs.

/** Messages as proto-loader decodes them: snake_case fields, uint64 as decimal strings. */
interface WireMessage {
  id: string;
  user: string;
  content: string;
  room: string;
  timestamp: { seconds: string; nanos: number } | null;
  type: "CHAT" | "JOIN" | "LEAVE" | "SYSTEM";
  offset: string;
  client_message_id: string;
}

interface WireMetric {
  name: string;
  value: number;
  labels: Record<string, string>;
}

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void;

/** The loaded ChatService client, typed by hand for the calls this file makes. */
interface ChatClient extends grpc.Client {
  SendMessage(
    req: object,
    cb: Callback<{ message_id: string; offset: string }>,
  ): grpc.ClientUnaryCall;
  GetHistory(req: object, cb: Callback<{ messages: WireMessage[]; last_offset: string }>): void;
  SubscribeMessages(
    req: object,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<WireMessage>;
  UploadMessages(
    cb: Callback<{ message_count: number; success: boolean; last_offset: string }>,
  ): grpc.ClientWritableStream<object>;
  Chat(): grpc.ClientDuplexStream<object, WireMessage>;
  StreamMetrics(req: object): grpc.ClientReadableStream<WireMetric>;
}

let server: ServerProcess;
let client: ChatClient;

beforeAll(async () => {
  server = await startServer({ store: "memory" });
  client = grpcJsChatClient<ChatClient>(server.port);
});

afterAll(async () => {
  client?.close();
  await server?.close();
});

function unary<T>(call: (cb: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    call((err, value) => (err === null ? resolve(value as T) : reject(err)));
  });
}

/** Reads a server stream until `done` says so, then cancels it; bounded by `timeoutMs`. */
function readUntil<T>(
  stream: grpc.ClientReadableStream<T>,
  done: (received: T[]) => boolean,
  timeoutMs = 5_000,
): Promise<T[]> {
  const received: T[] = [];
  return within(
    new Promise<T[]>((resolve, reject) => {
      stream.on("data", (item: T) => {
        received.push(item);
        if (done(received)) {
          stream.cancel();
          resolve(received);
        }
      });
      stream.on("error", (err: grpc.ServiceError) => {
        if (err.code !== grpc.status.CANCELLED) reject(err);
      });
      stream.on("end", () => reject(new Error(`stream ended after ${received.length} items`)));
    }),
    timeoutMs,
    "grpc-js stream",
  ).finally(() => stream.cancel());
}

describe("@grpc/grpc-js with proto-loader", () => {
  test("unary SendMessage and GetHistory: offsets, idempotent retry", async () => {
    const room = uniqueRoom("grpcjs");
    const a = await unary<{ message_id: string; offset: string }>((cb) =>
      client.SendMessage({ room, user: "g", content: "one" }, cb),
    );
    const keyed = { room, user: "g", content: "two", client_message_id: "k" };
    const b = await unary<{ message_id: string; offset: string }>((cb) =>
      client.SendMessage(keyed, cb),
    );
    const retry = await unary<{ message_id: string; offset: string }>((cb) =>
      client.SendMessage(keyed, cb),
    );
    expect([a.offset, b.offset]).toEqual(["1", "2"]);
    expect(retry).toMatchObject({ message_id: b.message_id, offset: "2" });
    const history = await unary<{ messages: WireMessage[]; last_offset: string }>((cb) =>
      client.GetHistory({ room }, cb),
    );
    expect(history.last_offset).toBe("2");
    expect(history.messages.map((m) => [m.offset, m.content, m.type])).toEqual([
      ["1", "one", "CHAT"],
      ["2", "two", "CHAT"],
    ]);
    expect(Number(history.messages[0]?.timestamp?.seconds)).toBeGreaterThan(1_700_000_000);
  });

  test("server stream: since_offset replay then live; unset since_offset is live only", async () => {
    const room = uniqueRoom("grpcjs");
    for (const content of ["h1", "h2", "h3"]) {
      await unary((cb) => client.SendMessage({ room, user: "g", content }, cb));
    }
    const stream = client.SubscribeMessages({ room, user: "reader", since_offset: "1" });
    // welcome, h2, h3, the reader's JOIN (4), then the live message (5).
    const live = (async () => {
      // Sent once the replay has been read, so it arrives live.
      await within(
        new Promise<void>((resolve) => {
          const onData = (m: WireMessage) => {
            if (m.type === "JOIN") {
              stream.off("data", onData);
              resolve();
            }
          };
          stream.on("data", onData);
        }),
        5_000,
        "the reader's JOIN after the replay",
      );
      await unary((cb) => client.SendMessage({ room, user: "g", content: "live" }, cb));
    })();
    const got = await readUntil(stream, (r) => r.some((m) => m.content === "live"));
    await live;
    expect(got[0]).toMatchObject({ type: "SYSTEM", offset: "0", id: "system" });
    expect(got.slice(1).map((m) => [m.offset, m.type, m.content])).toEqual([
      ["2", "CHAT", "h2"],
      ["3", "CHAT", "h3"],
      ["4", "JOIN", "reader joined"],
      ["5", "CHAT", "live"],
    ]);

    // Without since_offset (proto3 optional left unset): no history, the JOIN comes first.
    const liveOnly = await readUntil(
      client.SubscribeMessages({ room, user: "late" }),
      (r) => r.length >= 2,
    );
    expect(liveOnly.map((m) => m.type)).toEqual(["SYSTEM", "JOIN"]);
    expect(liveOnly[1]?.user).toBe("late");
  });

  test("client stream: UploadMessages stores every message", async () => {
    const room = uniqueRoom("grpcjs");
    const response = await within(
      new Promise<{ message_count: number; success: boolean; last_offset: string; epoch: string }>(
        (resolve, reject) => {
          const call = client.UploadMessages((err, res) =>
            err === null ? resolve(res as never) : reject(err),
          );
          for (let i = 0; i < 10; i++) call.write({ room, user: "up", content: `u${i}` });
          call.end();
        },
      ),
      5_000,
      "UploadMessages",
    );
    expect(response).toEqual({
      message_count: 10,
      success: true,
      last_offset: "10",
      epoch: expect.stringMatching(/^[A-Za-z0-9_-]{12}$/),
    });
  });

  test("bidi: Chat echoes with the stored id and offset, and ends when the client ends", async () => {
    const room = uniqueRoom("grpcjs");
    const call = client.Chat();
    const received: WireMessage[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      call.on("data", (m: WireMessage) => {
        received.push(m);
        if (received.filter((r) => r.content.startsWith("Echo: ")).length === 2) call.end();
      });
      call.on("end", resolve);
      call.on("error", reject);
    });
    call.write({ room, user: "bidi", content: "first" });
    call.write({ room, user: "bidi", content: "second" });
    await within(ended, 5_000, "Chat ends");
    const echoes = received.filter((m) => m.content.startsWith("Echo: "));
    expect(echoes.map((m) => [m.type, m.content, m.offset])).toEqual([
      // The session's JOIN is offset 1.
      ["SYSTEM", "Echo: first", "2"],
      ["SYSTEM", "Echo: second", "3"],
    ]);
    expect(echoes.every((m) => m.id.length > 0 && m.id !== "system")).toBe(true);
  });

  test("StreamMetrics: a batch of real metrics", async () => {
    const got = await readUntil(client.StreamMetrics({ interval_seconds: 1 }), (r) =>
      r.some((m) => m.name === "open_streams" && m.labels.rpc === "StreamLogs"),
    );
    const rss = got.find((m) => m.name === "memory_usage" && m.labels.type === "resident");
    expect(rss?.value).toBeGreaterThan(10);
    expect(got.every((m) => m.labels.instance === `127.0.0.1:${server.port}`)).toBe(true);
    const open = got.find((m) => m.name === "open_streams" && m.labels.rpc === "StreamMetrics");
    expect(open?.value).toBe(1);
  });

  test("errors carry gRPC status codes", async () => {
    const err = await unary((cb) => client.SendMessage({ room: "", user: "g", content: "x" }, cb))
      .then(() => undefined)
      .catch((e: grpc.ServiceError) => e);
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/room/);

    const tooMany = await unary((cb) => client.GetHistory({ room: "r", limit: 501 }, cb))
      .then(() => undefined)
      .catch((e: grpc.ServiceError) => e);
    expect(tooMany?.code).toBe(grpc.status.INVALID_ARGUMENT);

    // A deadline the server cannot meet: a subscription outlives 300 ms.
    const deadline = await within(
      new Promise<grpc.ServiceError>((resolve) => {
        const call = client.SubscribeMessages(
          { room: uniqueRoom("grpcjs"), user: "d" },
          new grpc.Metadata(),
          { deadline: Date.now() + 300 },
        );
        call.on("data", () => {});
        call.on("error", resolve);
      }),
      5_000,
      "deadline",
    );
    expect(deadline.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });
});
