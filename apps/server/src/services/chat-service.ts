import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type ChatService,
  type Message,
  MessageSchema,
  MessageType,
  type Metric,
  MetricSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import type { Logger } from "pino";
import { BoundedQueue } from "../domain/bounded-queue.js";
import { ValidationError } from "../domain/errors.js";
import { type RoomCounts, RoomDirectory, readRoomCounts } from "../domain/room-directory.js";
import { type Rooms, toMessage } from "../domain/rooms.js";
import type { Subscriber } from "../domain/subscriber.js";
import type { MessageLimits } from "../domain/validation.js";
import { METHOD_POLICIES } from "../policy/method-policy.js";
import type { Sample, Telemetry } from "../telemetry/telemetry.js";
import { createSubscriptions, type OpenSubscription, offsetNumber } from "./subscription.js";

/** What the ChatService handlers need. */
export interface ChatServiceDeps {
  rooms: Rooms;
  telemetry: Telemetry;
  logger: Logger;
  limits: MessageLimits & { subscriberQueueLimit: number };
  /** Seconds of silence on a Chat stream before a SYSTEM heartbeat. */
  chatHeartbeatS: number;
  /** This node's name, the `instance` label of every metric. */
  instanceId: string;
  /** Opens SubscribeMessages subscriptions; made from the other deps when not given. */
  subscribe?: OpenSubscription;
  /**
   * The room list's change feed (WatchRooms); made from `rooms` when not given (then it learns of
   * changes only by polling, as it does of other nodes' changes).
   */
  directory?: RoomDirectory;
}

/** History page size when the request says 0. */
const DEFAULT_HISTORY_LIMIT = 100;
/** In-flight appends per UploadMessages call, so they share group commits. */
const UPLOAD_WINDOW = 256;
/**
 * RPC names reported by the open_streams metric even when none is open: every streaming method
 * but the open ones (health's Watch, reflection), from policy/method-policy.ts. Each handler
 * counts its streams with `telemetry.streamOpened(name)`.
 */
const STREAMING_RPCS = [...METHOD_POLICIES.values()]
  .filter((p) => p.kind !== "unary" && !p.open)
  .map((p) => p.method.name);

/**
 * chat.ChatService: thin handlers that call the rooms domain. Requests arrive validated
 * (edge/rpc/validation-interceptor.ts); the domain's errors leave as they are thrown, and the
 * router's error interceptor gives each its Connect code (edge/rpc/errors.ts), the one mapper of
 * every RPC. Nothing here knows which protocol is in use.
 */
export function createChatService(deps: ChatServiceDeps): ServiceImpl<typeof ChatService> {
  const { rooms, telemetry, logger, limits } = deps;
  const subscribe = deps.subscribe ?? createSubscriptions(deps);
  const directory = deps.directory ?? new RoomDirectory(() => readRoomCounts(rooms));
  const onLeaveError = (err: unknown) => logger.warn({ err }, "could not store LEAVE");

  return {
    async sendMessage(req, ctx) {
      // The call's signal carries its deadline (grpc-timeout / Connect-Timeout-Ms) to the store.
      const { message, epoch, duplicate } = await rooms.send(req, undefined, ctx.signal);
      return {
        messageId: message.id,
        timestamp: timestampFromMs(message.timestampMs),
        offset: BigInt(message.offset),
        epoch,
        duplicate,
      };
    },

    async *subscribeMessages(req, ctx) {
      // connect-es's own handlers (and createRouterTransport) read it one message at a time;
      // the server's SubscribeMessages writer reads the same subscription in batches
      // (edge/rpc/subscribe-handler.ts).
      yield* await subscribe(req, ctx.signal);
    },

    async uploadMessages(requests, ctx) {
      const closeStream = telemetry.streamOpened("UploadMessages");
      const inFlight: Array<Promise<{ message: { offset: number }; epoch: string }>> = [];
      let stored = 0;
      let lastOffset = 0;
      let epoch = "";
      const settleOldest = async () => {
        const result = await (inFlight.shift() as (typeof inFlight)[number]);
        stored++;
        if (result.message.offset >= lastOffset) {
          lastOffset = result.message.offset;
          epoch = result.epoch;
        }
      };
      try {
        for await (const m of requests) {
          // Not awaited, so that appends share group commits. An invalid message never gets
          // here: the validation interceptor ends the call with "message N: …" as it arrives,
          // and the messages before it stay stored (awaited in `finally`).
          const sent = rooms.send(m, undefined, ctx.signal);
          // A store failure is still seen by settleOldest; this only keeps it from counting as
          // unhandled while the loop waits for the next request message.
          sent.catch(() => {});
          inFlight.push(sent);
          if (inFlight.length >= UPLOAD_WINDOW) await settleOldest();
        }
        while (inFlight.length > 0) await settleOldest();
        return { messageCount: stored, success: true, lastOffset: BigInt(lastOffset), epoch };
      } finally {
        // Whatever was accepted before an error is still stored and published.
        await Promise.allSettled(inFlight);
        closeStream();
      }
    },

    async *chat(requests, ctx) {
      const closeStream = telemetry.streamOpened("Chat");
      // The session's identity: its own messages are acknowledged, not fanned back to it.
      const origin = {};
      const out = new BoundedQueue<Message>(limits.subscriberQueueLimit);
      const joined = new Map<string, Subscriber>();
      // Set when the session's stream ends (cancel, error, end). The request stream can still
      // hold messages then, and a join that completes afterwards would add a subscriber that
      // nothing leaves: a ghost member that receives the room's fan-out until the process exits.
      let closed = false;
      let lastSentMs = Date.now();
      const heartbeat = setInterval(() => {
        if (Date.now() - lastSentMs >= deps.chatHeartbeatS * 1000) out.push(heartbeatMessage());
      }, deps.chatHeartbeatS * 1000);
      out.endOnAbort(ctx.signal);

      const forward = async (subscriber: Subscriber) => {
        try {
          for await (const m of rooms.stream(subscriber, undefined)) out.push(m);
        } catch (err) {
          out.end(err);
        }
      };
      const receive = async () => {
        let index = 0;
        for await (const m of requests) {
          if (closed) return;
          try {
            if (!joined.has(m.room)) {
              const subscriber = await rooms.join({ room: m.room, user: m.user, origin });
              if (closed) {
                void rooms.leave(subscriber, onLeaveError);
                return;
              }
              joined.set(m.room, subscriber);
              void forward(subscriber);
            }
            const { message, epoch } = await rooms.send(m, origin, ctx.signal);
            out.push(echo(toMessage(message), epoch));
          } catch (err) {
            // A bad message names its place in the request stream, as the validation
            // interceptor's answers do.
            throw err instanceof ValidationError ? err.inMessage(index) : err;
          }
          index++;
        }
      };
      receive().then(
        () => out.end(),
        (err: unknown) => out.end(err),
      );

      try {
        for await (const m of out) {
          lastSentMs = Date.now();
          yield m;
        }
      } finally {
        // The queue's own end, if any, was thrown: SlowSubscriberError when this reader fell
        // more than SUBSCRIBER_QUEUE_LIMIT messages behind (ResourceExhausted), or what ended it.
        closed = true;
        clearInterval(heartbeat);
        closeStream();
        for (const subscriber of joined.values()) void rooms.leave(subscriber, onLeaveError);
      }
    },

    async *streamMetrics(req, ctx) {
      const intervalMs = (req.intervalSeconds || 1) * 1000;
      const closeStream = telemetry.streamOpened("StreamMetrics");
      const read = telemetry.reader();
      try {
        for (;;) {
          try {
            await sleep(intervalMs, undefined, { signal: ctx.signal });
          } catch {
            throw ctx.signal.reason;
          }
          yield* metrics(await read(), deps.instanceId);
        }
      } finally {
        closeStream();
      }
    },

    async getHistory(req, ctx) {
      const limit = req.limit === 0 ? DEFAULT_HISTORY_LIMIT : req.limit;
      const afterOffset =
        req.afterOffset === undefined ? undefined : offsetNumber(req.afterOffset, "after_offset");
      const beforeOffset =
        req.beforeOffset === undefined
          ? undefined
          : offsetNumber(req.beforeOffset, "before_offset");
      const page = await rooms.history(
        req.room,
        { afterOffset, beforeOffset, limit },
        ctx.signal,
        req.epoch,
      );
      return {
        messages: page.messages.map(toMessage),
        lastOffset: BigInt(page.lastOffset),
        hasMore: page.hasMore,
        epoch: page.epoch,
      };
    },

    async listRooms() {
      return { rooms: (await readRoomCounts(rooms)).map(toRoomInfo) };
    },

    async *watchRooms(_req, ctx) {
      const closeStream = telemetry.streamOpened("WatchRooms");
      try {
        for await (const change of directory.watch(ctx.signal)) {
          yield {
            snapshot: change.snapshot,
            rooms: change.rooms.map(toRoomInfo),
            removedRooms: change.removed,
          };
        }
      } catch (err) {
        // Once the call ended, the call's own reason, whatever the directory ended with.
        throw ctx.signal.aborted ? ctx.signal.reason : err;
      } finally {
        closeStream();
      }
    },

    async listMembers(req) {
      return {
        members: (await rooms.members(req.room)).map((m) => ({
          user: m.user,
          joinedAt: timestampFromMs(m.joinedAtMs),
          connections: m.connections,
        })),
      };
    },
  };
}

/** A room's counts as the contract's RoomInfo (ListRooms, WatchRooms). */
function toRoomInfo(r: RoomCounts) {
  return {
    name: r.name,
    messageCount: BigInt(r.messageCount),
    lastOffset: BigInt(r.lastOffset),
    subscriberCount: r.subscribers,
    memberCount: r.members,
    epoch: r.epoch,
  };
}

/**
 * The seed's echo to a Chat sender, now carrying the stored message's id, offset, time and its
 * room log's epoch.
 */
function echo(stored: Message, epoch: string): Message {
  return create(MessageSchema, {
    ...stored,
    user: "Server",
    content: `Echo: ${stored.content}`,
    type: MessageType.SYSTEM,
    epoch,
  });
}

function heartbeatMessage(): Message {
  return create(MessageSchema, {
    id: `server_${Math.floor(Date.now() / 1000)}`,
    user: "Server",
    content: "Server is alive!",
    timestamp: timestampNow(),
    type: MessageType.SYSTEM,
  });
}

/**
 * One StreamMetrics batch: the seed's three names first, then Switchboard's own. A sample of the
 * whole machine (WORKERS=N) is labelled with the machine's instance and its `processes`.
 */
function metrics(s: Sample, process: string): Metric[] {
  const timestamp = timestampNow();
  const instance = s.machine?.instance ?? process;
  const scope = s.machine === undefined ? {} : { processes: String(s.machine.processes) };
  const metric = (name: string, value: number, labels: Record<string, string>) =>
    create(MetricSchema, { name, value, timestamp, labels: { instance, ...scope, ...labels } });
  const list = [
    metric("cpu_usage", s.cpuPercent, {
      unit: "percent",
      scope: s.machine === undefined ? "process" : "machine",
    }),
    metric("memory_usage", s.rssMiB, { type: "resident", unit: "MiB" }),
    metric("memory_usage", s.heapUsedMiB, { type: "heap_used", unit: "MiB" }),
    metric("requests_per_second", s.requestsPerSecond, { scope: "rpc" }),
    metric("event_loop_delay_ms", s.eventLoopDelayP50Ms, { quantile: "0.5" }),
    metric("event_loop_delay_ms", s.eventLoopDelayP99Ms, { quantile: "0.99" }),
    metric("event_loop_delay_ms", s.eventLoopDelayMaxMs, { quantile: "1" }),
    metric("messages_published_per_second", s.publishedPerSecond, {}),
    metric("messages_delivered_per_second", s.deliveredPerSecond, {}),
  ];
  for (const rpc of STREAMING_RPCS) {
    list.push(metric("open_streams", s.openStreams.get(rpc) ?? 0, { rpc }));
  }
  return list;
}
