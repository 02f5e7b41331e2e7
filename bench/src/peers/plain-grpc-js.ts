// The seed's chat.ChatService as a Node user would write it in an afternoon with @grpc/grpc-js and
// @grpc/proto-loader: the seed's own proto (contract/seed/chat.proto), an in-memory map of
// room → subscriber calls, and `call.write` to each of them. No store, no offsets, no history,
// no presence, no validation, no backpressure (grpc-js buffers what a slow reader does not take).
// It follows the seed's grpc-go server: a welcome message on subscribe, SendMessage and
// UploadMessages broadcast to the room, Chat echoes and broadcasts, StreamMetrics ticks. Health
// checking (grpc.health.v1.Health) the way a grpc-js user adds it: grpc-node's own
// grpc-health-check package.
// Nothing from @switchboard/server is used: this is the yardstick Switchboard must beat.
//
//   PORT=8081 node --import tsx bench/src/peers/plain-grpc-js.ts
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { HealthImplementation } from "grpc-health-check";

const definition = protoLoader.loadSync(
  join(import.meta.dirname, "..", "..", "..", "contract", "seed", "chat.proto"),
  { keepCase: false, longs: Number, enums: String, defaults: true },
);
const chat = (grpc.loadPackageDefinition(definition).chat as grpc.GrpcObject)
  .ChatService as grpc.ServiceClientConstructor;

interface Timestamp {
  seconds: number;
  nanos: number;
}
interface ChatMessage {
  id: string;
  user: string;
  content: string;
  room: string;
  timestamp: Timestamp;
  type: "CHAT" | "JOIN" | "LEAVE" | "SYSTEM";
}
type Subscriber = grpc.ServerWritableStream<{ room: string; user: string }, ChatMessage>;

const now = (): Timestamp => {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
};

const rooms = new Map<string, Set<Subscriber>>();
let messageId = 0;

function broadcast(room: string, message: ChatMessage): void {
  const subscribers = rooms.get(room);
  if (subscribers === undefined) return;
  for (const call of subscribers) call.write(message);
}

const server = new grpc.Server();
server.addService(chat.service, {
  sendMessage(
    call: grpc.ServerUnaryCall<{ user: string; content: string; room: string }, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) {
    const { user, content, room } = call.request;
    const message: ChatMessage = {
      id: `msg_${++messageId}`,
      user,
      content,
      room,
      timestamp: now(),
      type: "CHAT",
    };
    broadcast(room, message);
    callback(null, { messageId: message.id, timestamp: message.timestamp });
  },

  subscribeMessages(call: Subscriber) {
    const { room, user } = call.request;
    let subscribers = rooms.get(room);
    if (subscribers === undefined) {
      subscribers = new Set();
      rooms.set(room, subscribers);
    }
    const joined = subscribers;
    joined.add(call);
    const leave = () => {
      joined.delete(call);
      if (joined.size === 0 && rooms.get(room) === joined) rooms.delete(room);
    };
    call.on("cancelled", leave);
    call.on("error", leave);
    call.write({
      id: "system",
      user: "System",
      content: `Welcome to room ${room}, ${user}!`,
      room,
      timestamp: now(),
      type: "SYSTEM",
    });
  },

  uploadMessages(
    call: grpc.ServerReadableStream<ChatMessage, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) {
    let count = 0;
    call.on("data", (message: ChatMessage) => {
      count++;
      broadcast(message.room, message);
    });
    call.on("end", () => callback(null, { messageCount: count, success: true }));
  },

  chat(call: grpc.ServerDuplexStream<ChatMessage, ChatMessage>) {
    call.on("data", (message: ChatMessage) => {
      call.write({
        id: `echo_${message.id}`,
        user: "Server",
        content: `Echo: ${message.content}`,
        room: message.room,
        timestamp: now(),
        type: "SYSTEM",
      });
      broadcast(message.room, message);
    });
    call.on("end", () => call.end());
    const ticker = setInterval(
      () =>
        call.write({
          id: `server_${Math.floor(Date.now() / 1000)}`,
          user: "Server",
          content: "Server is alive!",
          room: "",
          timestamp: now(),
          type: "SYSTEM",
        }),
      5000,
    );
    call.on("close", () => clearInterval(ticker));
    call.on("cancelled", () => clearInterval(ticker));
  },

  streamMetrics(
    call: grpc.ServerWritableStream<{ instanceId: string; intervalSeconds: number }, unknown>,
  ) {
    const { instanceId, intervalSeconds } = call.request;
    const ticker = setInterval(
      () => {
        const timestamp = now();
        call.write({
          name: "cpu_usage",
          value: Math.random() * 100,
          timestamp,
          labels: { instance: instanceId, core: "0" },
        });
        call.write({
          name: "memory_usage",
          value: Math.random() * 8192,
          timestamp,
          labels: { instance: instanceId, type: "resident" },
        });
        call.write({
          name: "requests_per_second",
          value: Math.random() * 1000,
          timestamp,
          labels: { instance: instanceId, endpoint: "/api" },
        });
      },
      (intervalSeconds || 1) * 1000,
    );
    call.on("cancelled", () => clearInterval(ticker));
  },
});

new HealthImplementation({ "": "SERVING", "chat.ChatService": "SERVING" }).addToServer(server);

// (./domain.ts has the same PORT and ready line, but importing it would load Switchboard's domain.)
const port = Number(process.env.PORT ?? 8080);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  console.log(`plain-grpc-js ready on 127.0.0.1:${port}`);
});
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => server.tryShutdown(() => process.exit(0)));
