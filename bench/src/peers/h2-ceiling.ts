// The ceiling of the protocol layer: a raw node:http2 server with gRPC framing by hand, on the
// same Rooms and in-memory store as Switchboard (./domain.ts). SendMessage appends through
// Rooms.send; the fan-out watches the store's change feed once per room, encodes each message
// once and writes the same bytes to every subscriber stream. No presence, no JOIN/LEAVE, no
// history replay, no backpressure: it is what the protocol layer could cost, not a server.
//
//   PORT=8082 node --import tsx bench/src/peers/h2-ceiling.ts
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  MessageSchema,
  MessageType,
  SendMessageRequestSchema,
  SendMessageResponseSchema,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import {
  createMemoryPresence,
  createMemoryStore,
  Rooms,
  toMessage,
  ValidationError,
} from "@switchboard/server";
import { LIMITS, peerPort, ready } from "./domain.js";

const store = createMemoryStore();
const rooms = new Rooms(store, createMemoryPresence(), LIMITS);
const subscribers = new Map<string, Set<http2.ServerHttp2Stream>>();

function envelope(payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + payload.length);
  frame[0] = 0;
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, 5);
  return frame;
}

/** Reads a whole unary request body and returns its one message's payload. */
function readMessage(stream: http2.ServerHttp2Stream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const body = Buffer.concat(chunks);
      resolve(body.subarray(5, 5 + (body.length >= 5 ? body.readUInt32BE(1) : 0)));
    });
    stream.on("error", reject);
  });
}

async function watchRoom(room: string): Promise<Set<http2.ServerHttp2Stream>> {
  let set = subscribers.get(room);
  if (set !== undefined) return set;
  const created = new Set<http2.ServerHttp2Stream>();
  subscribers.set(room, created);
  set = created;
  await store.watch(room, {
    message(m) {
      // Encoded once; the same bytes go to every subscriber.
      const frame = envelope(toBinary(MessageSchema, toMessage(m)));
      for (const s of created) s.write(frame);
    },
    lost() {},
  });
  return set;
}

const server = http2.createServer({
  settings: { maxConcurrentStreams: 100_000, initialWindowSize: 1 << 20 },
});
server.on("session", (session) =>
  session.on("connect", () => session.setLocalWindowSize(16 << 20)),
);
server.on("stream", async (stream, headers) => {
  stream.on("error", () => {});
  const path = headers[":path"];
  try {
    if (path === "/chat.ChatService/SendMessage") {
      const req = fromBinary(SendMessageRequestSchema, await readMessage(stream));
      let answer: Buffer;
      try {
        const { message } = await rooms.send(req);
        answer = envelope(
          toBinary(
            SendMessageResponseSchema,
            create(SendMessageResponseSchema, {
              messageId: message.id,
              timestamp: timestampFromMs(message.timestampMs),
              offset: BigInt(message.offset),
            }),
          ),
        );
      } catch (err) {
        const code = err instanceof ValidationError ? "3" : "13";
        stream.respond(
          { ":status": 200, "content-type": "application/grpc", "grpc-status": code },
          {
            endStream: true,
          },
        );
        return;
      }
      stream.respond(
        { ":status": 200, "content-type": "application/grpc" },
        { waitForTrailers: true },
      );
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(answer);
      return;
    }
    if (path === "/chat.ChatService/SubscribeMessages") {
      const req = fromBinary(SubscribeRequestSchema, await readMessage(stream));
      const set = await watchRoom(req.room);
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.write(
        envelope(
          toBinary(
            MessageSchema,
            create(MessageSchema, {
              id: "welcome",
              user: "System",
              content: `Welcome to ${req.room}, ${req.user}!`,
              room: req.room,
              timestamp: timestampFromMs(Date.now()),
              type: MessageType.SYSTEM,
            }),
          ),
        ),
      );
      set.add(stream);
      stream.on("close", () => set.delete(stream));
      return;
    }
    stream.respond(
      { ":status": 200, "content-type": "application/grpc", "grpc-status": "12" },
      {
        endStream: true,
      },
    );
  } catch {
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }
});
const port = peerPort();
server.listen(port, "127.0.0.1", () => ready("h2-ceiling", port));
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(0));
