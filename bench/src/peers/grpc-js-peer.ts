// chat.ChatService on @grpc/grpc-js + @grpc/proto-loader: what a Node user would pick instead of
// Switchboard. Same Rooms, in-memory store and presence as Switchboard (./domain.ts); only the
// protocol layer differs. Each subscriber's messages are written with call.write, waiting for
// 'drain' when the call's buffer is full (a subscriber that stops reading then overflows its
// queue in the domain and ends with RESOURCE_EXHAUSTED, as in Switchboard).
//
//   PORT=8081 node --import tsx bench/src/peers/grpc-js-peer.ts
import { once } from "node:events";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { Message } from "@switchboard/proto/gen/chat/chat_pb";
import { SlowSubscriberError, ValidationError } from "@switchboard/server";
import { createPeerRooms, peerPort, ready } from "./domain.js";

const root = join(import.meta.dirname, "..", "..", "..");
const definition = protoLoader.loadSync(join(root, "proto/chat/chat.proto"), {
  keepCase: false,
  longs: String,
  enums: Number,
  defaults: true,
  includeDirs: [join(root, "proto")],
});
const chat = (grpc.loadPackageDefinition(definition).chat as grpc.GrpcObject)
  .ChatService as grpc.ServiceClientConstructor;

const rooms = createPeerRooms();

interface PlainTimestamp {
  seconds: string;
  nanos: number;
}
const plainTimestamp = (ms: number): PlainTimestamp => {
  const t = timestampFromMs(ms);
  return { seconds: String(t.seconds), nanos: t.nanos };
};
const toPlain = (m: Message) => ({
  id: m.id,
  user: m.user,
  content: m.content,
  room: m.room,
  timestamp: m.timestamp
    ? { seconds: String(m.timestamp.seconds), nanos: m.timestamp.nanos }
    : null,
  type: m.type,
  offset: String(m.offset),
  clientMessageId: m.clientMessageId,
});
// The domain pushes one Message object per publish to every subscriber: convert it once too.
const plainCache = new WeakMap<Message, ReturnType<typeof toPlain>>();
const plainMessage = (m: Message) => {
  let plain = plainCache.get(m);
  if (plain === undefined) {
    plain = toPlain(m);
    plainCache.set(m, plain);
  }
  return plain;
};

/**
 * Waits until the call's buffer drains, or until the subscriber's queue has ended (it overflowed
 * while this call could not write: the next read from Rooms.stream throws SlowSubscriberError).
 */
async function drained(
  call: grpc.ServerWritableStream<unknown, unknown>,
  subscriber: { isEnded: boolean },
  signal: AbortSignal,
): Promise<void> {
  const drain = once(call, "drain", { signal }).then(() => true);
  drain.catch(() => {});
  while (!subscriber.isEnded && !signal.aborted) {
    const timeout = new Promise<boolean>((r) => setTimeout(() => r(false), 100));
    if (await Promise.race([drain, timeout])) return;
  }
}

function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof ValidationError)
    return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
  if (err instanceof SlowSubscriberError)
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: err.message };
  return { code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) };
}

interface SendRequest {
  user: string;
  content: string;
  room: string;
  clientMessageId: string;
}

const server = new grpc.Server();
server.addService(chat.service, {
  sendMessage(
    call: grpc.ServerUnaryCall<SendRequest, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) {
    rooms.send(call.request).then(
      ({ message }) =>
        callback(null, {
          messageId: message.id,
          timestamp: plainTimestamp(message.timestampMs),
          offset: String(message.offset),
        }),
      (err: unknown) => callback(toStatus(err)),
    );
  },

  async subscribeMessages(
    call: grpc.ServerWritableStream<{ room: string; user: string; sinceOffset?: string }, unknown>,
  ) {
    const req = call.request;
    const sinceOffset = req.sinceOffset === undefined ? undefined : Number(req.sinceOffset);
    const abort = new AbortController();
    call.on("cancelled", () => abort.abort());
    let subscriber: Awaited<ReturnType<typeof rooms.join>> | undefined;
    try {
      subscriber = await rooms.join({ room: req.room, user: req.user });
      const joined = subscriber;
      abort.signal.addEventListener("abort", () => joined.end());
      call.write({
        id: "welcome",
        user: "System",
        content: `Welcome to ${req.room}, ${req.user}!`,
        room: req.room,
        timestamp: plainTimestamp(Date.now()),
        type: 3,
      });
      for await (const m of rooms.stream(subscriber, sinceOffset, abort.signal)) {
        if (abort.signal.aborted) break;
        // Backpressure: wait for the call's buffer to drain before taking the next message.
        if (!call.write(plainMessage(m))) await drained(call, joined, abort.signal);
      }
      call.end();
    } catch (err) {
      // grpc-js sends an 'error' event's status once the buffered writes are flushed.
      if (!abort.signal.aborted) call.emit("error", Object.assign(new Error(), toStatus(err)));
    } finally {
      if (subscriber !== undefined) void rooms.leave(subscriber, () => {});
    }
  },

  uploadMessages(
    call: grpc.ServerReadableStream<SendRequest, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) {
    const inFlight: Array<Promise<{ message: { offset: number } }>> = [];
    call.on("data", (m: SendRequest) => {
      const sent = rooms.send(m);
      sent.catch(() => {});
      inFlight.push(sent);
    });
    call.on("end", () => {
      Promise.all(inFlight).then(
        (results) =>
          callback(null, {
            messageCount: results.length,
            success: true,
            lastOffset: String(results.reduce((a, r) => Math.max(a, r.message.offset), 0)),
          }),
        (err: unknown) => callback(toStatus(err)),
      );
    });
  },

  streamMetrics(call: grpc.ServerWritableStream<{ intervalSeconds: number }, unknown>) {
    const intervalMs = (call.request.intervalSeconds || 1) * 1000;
    let cpu = process.cpuUsage();
    let at = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      const used = process.cpuUsage(cpu);
      const timestamp = plainTimestamp(Date.now());
      const labels = { instance: "grpc-js-peer" };
      call.write({ name: "rss_bytes", value: process.memoryUsage.rss(), timestamp, labels });
      call.write({
        name: "cpu_percent",
        value: ((used.user + used.system) / 1000 / (now - at)) * 100,
        timestamp,
        labels,
      });
      call.write({ name: "messages_published", value: rooms.published, timestamp, labels });
      cpu = process.cpuUsage();
      at = now;
    }, intervalMs);
    call.on("cancelled", () => clearInterval(timer));
    call.on("close", () => clearInterval(timer));
  },

  getHistory(
    call: grpc.ServerUnaryCall<
      { room: string; afterOffset?: string; beforeOffset?: string; limit: number },
      unknown
    >,
    callback: grpc.sendUnaryData<unknown>,
  ) {
    const req = call.request;
    rooms
      .history(req.room, {
        afterOffset: req.afterOffset === undefined ? undefined : Number(req.afterOffset),
        beforeOffset: req.beforeOffset === undefined ? undefined : Number(req.beforeOffset),
        limit: Math.min(req.limit || 100, 500),
      })
      .then(
        (page) =>
          callback(null, {
            messages: page.messages.map((m) => ({
              ...m,
              timestamp: plainTimestamp(m.timestampMs),
              offset: String(m.offset),
            })),
            lastOffset: String(page.lastOffset),
            hasMore: page.hasMore,
          }),
        (err: unknown) => callback(toStatus(err)),
      );
  },
});

const port = peerPort();
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  ready("grpc-js-peer", port);
});
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => server.tryShutdown(() => process.exit(0)));
