// A plain Fastify JSON route doing SendMessage's work: validate (Rooms.send validates), store in
// the same Rooms and in-memory store as Switchboard (./domain.ts), answer JSON. The yardstick
// for Connect JSON over HTTP/1.1. Same path and body as Connect's, so one load works on both.
//
//   PORT=8083 node --import tsx bench/src/peers/fastify-json.ts

import { ValidationError } from "@switchboard/server";
import Fastify from "fastify";
import { createPeerRooms, peerPort, ready } from "./domain.js";

const rooms = createPeerRooms();
const app = Fastify({ logger: false });

interface SendBody {
  user?: string;
  content?: string;
  room?: string;
  clientMessageId?: string;
}

app.post<{ Body: SendBody }>("/chat.ChatService/SendMessage", async (request, reply) => {
  const b = request.body ?? {};
  try {
    const { message } = await rooms.send({
      user: b.user ?? "",
      content: b.content ?? "",
      room: b.room ?? "",
      clientMessageId: b.clientMessageId ?? "",
    });
    return {
      messageId: message.id,
      timestamp: new Date(message.timestampMs).toISOString(),
      offset: String(message.offset),
    };
  } catch (err) {
    if (err instanceof ValidationError)
      return reply.code(400).send({ code: "invalid_argument", message: err.message });
    throw err;
  }
});

const port = peerPort();
await app.listen({ port, host: "127.0.0.1" });
ready("fastify-json", port);
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => void app.close().then(() => process.exit(0)));
