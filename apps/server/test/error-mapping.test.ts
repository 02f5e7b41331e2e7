import type http2 from "node:http2";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  type Message,
  MessageSchema,
  MessageType,
  SendMessageRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { connectH2, envelope, grpcRequest, readResponse } from "./raw-grpc.js";
import { Code, chatClient, StreamReader, TRANSPORT_CASES, uniqueRoom, within } from "./support.js";

// One error mapper for every RPC (edge/rpc/errors.ts), seen from outside: a Chat reader that
// falls behind gets ResourceExhausted like a SubscribeMessages one, and an error the server did
// not expect reaches the caller as Internal "internal error" on every protocol, while its own
// text goes to the log line of the call, with the request's id.

/** Text only the store knows: it must reach the log, never a caller. */
const SECRET = "SQLITE_IOERR_SHORT_READ: page 4242 of the message table is unreadable";

let server: ServerProcess;

const byName = (name: string) => {
  const tc = TRANSPORT_CASES.find((t) => t.name === name);
  if (tc === undefined) throw new Error(name);
  return tc;
};

beforeAll(async () => {
  server = await startServer({ store: "sqlite" });
});

afterAll(async () => {
  await server?.close();
});

describe("Chat's outgoing queue", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ store: "memory", env: { SUBSCRIBER_QUEUE_LIMIT: "8" } });
  });
  afterAll(async () => {
    await server?.close();
  });

  // The reader of a Chat stream never reads (a 1 KiB window that is never reopened) while the
  // room gets thousands of messages: once the HTTP/2 buffers are full its queue of 8 overflows.
  test("a Chat reader that falls behind ends with ResourceExhausted 'slow consumer'", async () => {
    const room = uniqueRoom("slow-chat");
    const total = 3_000;
    const publisher = chatClient(server.baseUrl, byName("connect h1.1 binary"));
    const control = new StreamReader<Message>((signal) =>
      publisher.subscribeMessages({ room, user: "control" }, { signal }),
    );
    const session = await connectH2(server.baseUrl, { initialWindowSize: 1024 });
    try {
      await control.waitFor((m) => m.type === MessageType.JOIN && m.user === "control");
      const stream = grpcRequest(session, "/chat.ChatService/Chat");
      stream.on("error", () => {});
      // Listened for from the start: the trailers may come before the body is read.
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("trailers", (t) => {
        trailers = t;
      });
      // Joins the room; the request side stays open and nothing is read.
      stream.write(
        envelope(
          toBinary(MessageSchema, create(MessageSchema, { room, user: "slow", content: "hello" })),
        ),
      );
      await control.waitFor((m) => m.user === "slow" && m.content === "hello");
      // Four publishers, each waiting for its ack: at most 4 messages are in flight, so the
      // room's fan-out queue of the Chat session (also 8) never overflows; its outgoing queue,
      // behind the stalled HTTP/2 stream, does.
      let next = 0;
      const publish = async () => {
        while (next < total) {
          next++;
          await publisher.sendMessage({ room, user: "pub", content: `m${next}` });
        }
      };
      await within(Promise.all([publish(), publish(), publish(), publish()]), 60_000, "publish");

      const result = readResponse(stream, 10_000);
      stream.end();
      const { body } = await result;
      const status = Number(trailers["grpc-status"]);
      const message = decodeURIComponent(String(trailers["grpc-message"]));
      console.info(
        `slow Chat reader: ${body.length} bytes reached it before grpc-status ${status} "${message}"`,
      );
      expect({ status, message }).toEqual({
        status: Code.ResourceExhausted,
        message: "slow consumer: more than 8 items behind (SUBSCRIBER_QUEUE_LIMIT)",
      });
      // The server is fine, and so is the room's other reader.
      const after = await publisher.sendMessage({ room, user: "pub", content: "after" });
      expect(after.offset).toBeGreaterThan(BigInt(total));
    } finally {
      session.destroy();
      control.cancel();
      await control.ended;
    }
  }, 90_000);
});

describe("an error the server did not expect", () => {
  // A real SQLite failure in the server's store: a trigger, added from outside through a second
  // connection (WAL allows it), makes every insert into one room fail with SECRET.
  const room = "doomed-room";
  beforeAll(() => {
    const db = new Database(join(server.dataDir, "switchboard.db"));
    try {
      db.exec(
        `CREATE TRIGGER fail_doomed BEFORE INSERT ON messages WHEN NEW.room = '${room}'
         BEGIN SELECT RAISE(ABORT, '${SECRET}'); END;`,
      );
    } finally {
      db.close();
    }
  });

  /** The access log line of the call with `requestId`. */
  const logLine = (requestId: string) =>
    server.waitForRecord((r) => r.msg === "rpc" && r.requestId === requestId);

  test("Connect: internal 'internal error'; the cause is in the log line with the request id", async () => {
    const requestId = "error-mapping-connect-1";
    const res = await fetch(`${server.baseUrl}/chat.ChatService/SendMessage`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": requestId },
      body: JSON.stringify({ room, user: "u", content: "x" }),
    });
    const body = await res.text();
    expect(res.status).toBe(500);
    expect(JSON.parse(body)).toEqual({ code: "internal", message: "internal error" });
    expect(body + JSON.stringify([...res.headers])).not.toContain("4242");

    const line = await logLine(requestId);
    expect(line).toMatchObject({
      method: "/chat.ChatService/SendMessage",
      protocol: "connect",
      code: "Internal",
      error: "internal error",
      err: { type: "SqliteError", message: SECRET },
    });
  });

  test("gRPC: grpc-status 13 'internal error', nothing of the cause in headers or trailers", async () => {
    const requestId = "error-mapping-grpc-1";
    const session = await connectH2(server.baseUrl);
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/chat.ChatService/SendMessage",
        "content-type": "application/grpc",
        te: "trailers",
        "x-request-id": requestId,
      });
      const result = readResponse(stream);
      stream.end(
        envelope(
          toBinary(
            SendMessageRequestSchema,
            create(SendMessageRequestSchema, { room, user: "u", content: "x" }),
          ),
        ),
      );
      const { status, message, headers, trailers, body } = await result;
      expect({ status, message }).toEqual({ status: Code.Internal, message: "internal error" });
      expect(JSON.stringify([headers, trailers]) + body.toString()).not.toContain("4242");
    } finally {
      session.close();
    }
    const line = await logLine(requestId);
    expect(line).toMatchObject({ protocol: "grpc", code: "Internal" });
    expect((line.err as { message: string }).message).toBe(SECRET);
  });

  test.each(["connect h1.1 binary", "grpc-web h1.1 binary", "grpc"])(
    "%s: UploadMessages (connect-es's own handler) answers the same",
    async (name) => {
      const client = chatClient(server.baseUrl, byName(name));
      const requestId = `error-mapping-upload-${name.replaceAll(" ", "-")}`;
      const err = await client
        .uploadMessages(
          (async function* () {
            yield { room, user: "u", content: "x" };
          })(),
          { headers: { "x-request-id": requestId } },
        )
        .then(
          () => undefined,
          (e: unknown) => e as { code: Code; rawMessage: string },
        );
      expect(err).toMatchObject({ code: Code.Internal, rawMessage: "internal error" });
      const line = await logLine(requestId);
      expect(line).toMatchObject({ method: "/chat.ChatService/UploadMessages", code: "Internal" });
      expect((line.err as { message: string }).message).toBe(SECRET);
    },
  );

  test("a request id that is not a short token is replaced by a generated one", async () => {
    const res = await fetch(`${server.baseUrl}/chat.ChatService/ListRooms`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "has spaces\tand tabs" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    const line = await server.waitForRecord(
      (r) => r.msg === "rpc" && r.method === "/chat.ChatService/ListRooms",
    );
    expect(line.requestId).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
  });
});
