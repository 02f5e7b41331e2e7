import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createRouterTransport,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { bearerInterceptors } from "@switchboard/client/web";
import {
  ChatService,
  type Message,
  MessageSchema,
  MessageType,
} from "@switchboard/proto/gen/chat/chat_pb";
import { type LogEntry, LogService } from "@switchboard/proto/gen/chat/log_pb";
import { Connection, type WebProtocol } from "../lib/connection.svelte.ts";

/**
 * An in-memory Switchboard for component tests: rooms with offsets, JOIN and LEAVE, the SYSTEM
 * welcome, history pages and live fan-out, like apps/server's domain but small. Served through
 * createRouterTransport, so components talk to it with the real Connect clients.
 */
export class FakeServer {
  readonly rooms = new Map<string, Message[]>();
  readonly subscribers = new Map<string, Set<{ user: string; push: (m: Message) => void }>>();
  readonly logs: LogEntry[] = [];
  readonly logListeners = new Set<(entry: LogEntry) => void>();
  /** Set to make the next calls of a method fail (by method name, e.g. "SendMessage"). */
  readonly failures = new Map<string, ConnectError>();
  /** When set, every call needs `Authorization: Bearer <requiredToken>`. */
  requiredToken: string | undefined;
  /** Every request, by method name. */
  readonly calls: Array<{ method: string; request: unknown }> = [];

  /** Stores a message as the server would, publishes it, and returns it. */
  append(room: string, user: string, content: string, type = MessageType.CHAT): Message {
    const log = this.rooms.get(room) ?? [];
    this.rooms.set(room, log);
    const message = create(MessageSchema, {
      id: `m${log.length + 1}`,
      room,
      user,
      content,
      type,
      offset: BigInt(log.length + 1),
      timestamp: timestampNow(),
    });
    log.push(message);
    for (const s of this.subscribers.get(room) ?? []) s.push(message);
    return message;
  }

  /** Writes a log line to the tail. */
  log(entry: LogEntry): void {
    this.logs.push(entry);
    for (const listener of this.logListeners) listener(entry);
  }

  routes = (router: ConnectRouter): void => {
    router.service(ChatService, {
      sendMessage: async (req) => {
        const m = this.append(req.room, req.user, req.content);
        return { messageId: m.id, offset: m.offset, timestamp: m.timestamp };
      },
      subscribeMessages: (req, ctx) => this.#subscribe(req.room, req.user, req.sinceOffset, ctx),
      getHistory: async (req) => {
        const log = this.rooms.get(req.room) ?? [];
        const limit = req.limit || 100;
        let page = log.filter(
          (m) =>
            (req.afterOffset === undefined || m.offset > req.afterOffset) &&
            (req.beforeOffset === undefined || m.offset < req.beforeOffset),
        );
        const hasMore = page.length > limit;
        page = req.afterOffset === undefined ? page.slice(-limit) : page.slice(0, limit);
        return { messages: page, lastOffset: BigInt(log.length), hasMore };
      },
      listRooms: async () => ({
        rooms: [...this.rooms].map(([name, log]) => ({
          name,
          messageCount: BigInt(log.length),
          lastOffset: BigInt(log.length),
          subscriberCount: this.subscribers.get(name)?.size ?? 0,
        })),
      }),
      listMembers: async (req) => ({
        members: [...new Set([...(this.subscribers.get(req.room) ?? [])].map((s) => s.user))].map(
          (user) => ({ user, connections: 1, joinedAt: timestampNow() }),
        ),
      }),
      streamMetrics: async function* (_req, ctx) {
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      },
    });
    router.service(LogService, {
      streamLogs: (req, ctx) => this.#tail(req.minLevel, req.backlog, ctx),
    });
  };

  async *#subscribe(
    room: string,
    user: string,
    since: bigint | undefined,
    ctx: HandlerContext,
  ): AsyncGenerator<Message> {
    const queue: Message[] = [];
    let wake: (() => void) | undefined;
    const entry = {
      user,
      push: (m: Message) => {
        queue.push(m);
        wake?.();
      },
    };
    const set = this.subscribers.get(room) ?? new Set();
    this.subscribers.set(room, set);
    const first = ![...set].some((s) => s.user === user);
    set.add(entry);
    try {
      if (first) this.append(room, user, `${user} joined`, MessageType.JOIN);
      yield create(MessageSchema, { id: "system", user: "System", room, type: MessageType.SYSTEM });
      let last = since ?? 0n;
      if (since !== undefined) {
        for (const m of this.rooms.get(room) ?? []) {
          if (m.offset > since) {
            last = m.offset;
            yield m;
          }
        }
      }
      while (!ctx.signal.aborted) {
        const next = queue.shift();
        if (next === undefined) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            ctx.signal.addEventListener("abort", () => resolve(), { once: true });
          });
          continue;
        }
        if (next.offset <= last) continue;
        last = next.offset;
        yield next;
      }
    } finally {
      set.delete(entry);
      if (![...set].some((s) => s.user === user)) {
        this.append(room, user, `${user} left`, MessageType.LEAVE);
      }
    }
  }

  async *#tail(minLevel: number, backlog: number, ctx: HandlerContext): AsyncGenerator<LogEntry> {
    const level = minLevel || 30;
    const queue: LogEntry[] = [];
    let wake: (() => void) | undefined;
    const listener = (e: LogEntry) => {
      if (e.level >= level) {
        queue.push(e);
        wake?.();
      }
    };
    this.logListeners.add(listener);
    try {
      yield* this.logs.filter((e) => e.level >= level).slice(-backlog);
      while (!ctx.signal.aborted) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
          ctx.signal.addEventListener("abort", () => resolve(), { once: true });
        });
      }
    } finally {
      this.logListeners.delete(listener);
    }
  }

  /** Records every call and fails those set in {@link FakeServer.failures}. */
  interceptor: Interceptor = (next) => async (req) => {
    if (
      this.requiredToken !== undefined &&
      req.header.get("authorization") !== `Bearer ${this.requiredToken}`
    ) {
      throw new ConnectError("missing or invalid bearer token", Code.Unauthenticated);
    }
    const failure = this.failures.get(req.method.name);
    if (!req.stream) {
      this.calls.push({ method: req.method.name, request: req.message });
      if (failure !== undefined) throw failure;
      return next(req);
    }
    // The dashboard only opens server streams: one request message.
    const messages: unknown[] = [];
    for await (const m of req.message) messages.push(m);
    this.calls.push({ method: req.method.name, request: messages[0] });
    if (failure !== undefined) throw failure;
    async function* replay() {
      yield* messages;
    }
    return next({ ...req, message: replay() } as typeof req);
  };

  /** A Connection whose transport is this server in memory (the protocol is only a label). */
  connection(protocol: WebProtocol = "connect"): Connection {
    return new Connection(
      ({ interceptors, token }) =>
        createRouterTransport(this.routes, {
          router: { interceptors: [this.interceptor] },
          transport: {
            interceptors: [
              ...bearerInterceptors({ baseUrl: "", ...(token === undefined ? {} : { token }) }),
              ...interceptors,
            ],
          },
        }),
      protocol,
    );
  }
}

/** A ConnectError as the server would raise it. */
export function serverError(message: string, code: Code): ConnectError {
  return new ConnectError(message, code);
}
