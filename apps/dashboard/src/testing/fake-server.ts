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
import {
  Health,
  HealthCheckResponse_ServingStatus,
} from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { Connection, type WebProtocol } from "../lib/connection.svelte.ts";

/**
 * An in-memory Switchboard for component tests: rooms with offsets, JOIN and LEAVE, the SYSTEM
 * welcome, history pages and live fan-out, like apps/server's domain but small. Served through
 * createRouterTransport, so components talk to it with the real Connect clients.
 */
export class FakeServer {
  readonly rooms = new Map<string, Message[]>();
  readonly subscribers = new Map<
    string,
    Set<{ user: string; watching: boolean; push: (m: Message) => void }>
  >();
  readonly logs: LogEntry[] = [];
  readonly logListeners = new Set<(entry: LogEntry) => void>();
  /** Set to make the next calls of a method fail (by method name, e.g. "SendMessage"). */
  readonly failures = new Map<string, ConnectError>();
  /** When set, every call needs `Authorization: Bearer <requiredToken>`. */
  requiredToken: string | undefined;
  /** Every request, by method name. */
  readonly calls: Array<{ method: string; request: unknown }> = [];
  /** Every request's headers, in order. */
  readonly headers: Headers[] = [];
  /** While true the server is unreachable: see {@link FakeServer.goDown}. */
  #down = false;
  /** Ends every open stream with a network error; replaced each time the server goes down. */
  #cut = FakeServer.#newCut();

  static #newCut() {
    const cut = Promise.withResolvers<never>();
    cut.promise.catch(() => {});
    return cut;
  }
  /** Stored messages by room and client_message_id. */
  readonly #byKey = new Map<string, Message>();
  /** Rooms changes for WatchRooms watchers. */
  readonly #roomWatchers = new Set<() => void>();
  /** Each room log's epoch; {@link FakeServer.resetRoom} starts a new log under a new one. */
  readonly #epochs = new Map<string, string>();
  #epochCount = 0;

  /** The epoch of `room`'s log ("" while it has none). */
  epochOf(room: string): string {
    return this.#epochs.get(room) ?? "";
  }

  /** The room's history is lost (as when a server's store is): a new, empty log, a new epoch. */
  resetRoom(room: string): void {
    this.rooms.set(room, []);
    this.#epochs.set(room, `epoch-${++this.#epochCount}`);
    this.#roomsChanged();
  }

  /**
   * Makes the server unreachable as a browser sees it: every call fails as fetch does, with a
   * TypeError "Failed to fetch" (connect-web: `unknown`), and every open stream breaks with a
   * TypeError "network error". {@link FakeServer.comeBack} ends it.
   */
  goDown(): void {
    this.#down = true;
    this.#cut.reject(new TypeError("network error"));
    this.#cut = FakeServer.#newCut();
  }

  comeBack(): void {
    this.#down = false;
  }

  /** Stores a message as the server would, publishes it, and returns it. */
  append(room: string, user: string, content: string, type = MessageType.CHAT): Message {
    const log = this.rooms.get(room) ?? [];
    this.rooms.set(room, log);
    if (!this.#epochs.has(room)) this.#epochs.set(room, `epoch-${++this.#epochCount}`);
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
    this.#roomsChanged();
    return message;
  }

  #roomsChanged(): void {
    for (const wake of this.#roomWatchers) wake();
  }

  #roomInfos() {
    return [...this.rooms].map(([name, log]) => {
      const subs = [...(this.subscribers.get(name) ?? [])];
      return {
        name,
        messageCount: BigInt(log.length),
        lastOffset: BigInt(log.length),
        subscriberCount: subs.length,
        memberCount: new Set(subs.filter((s) => !s.watching).map((s) => s.user)).size,
        epoch: this.epochOf(name),
      };
    });
  }

  /** Writes a log line to the tail. */
  log(entry: LogEntry): void {
    this.logs.push(entry);
    for (const listener of this.logListeners) listener(entry);
  }

  routes = (router: ConnectRouter): void => {
    router.service(ChatService, {
      sendMessage: async (req) => {
        // Idempotent like the real server: a retried key answers with the stored message.
        const key = `${req.room}\n${req.clientMessageId}`;
        const stored = req.clientMessageId === "" ? undefined : this.#byKey.get(key);
        if (stored !== undefined) {
          return { messageId: stored.id, offset: stored.offset, timestamp: stored.timestamp };
        }
        const m = this.append(req.room, req.user, req.content);
        if (req.clientMessageId !== "") this.#byKey.set(key, m);
        return { messageId: m.id, offset: m.offset, timestamp: m.timestamp };
      },
      subscribeMessages: (req, ctx) =>
        this.#subscribe(req.room, req.user, req.sinceOffset, ctx, req.watchOnly),
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
        return {
          messages: page,
          lastOffset: BigInt(log.length),
          hasMore,
          epoch: this.epochOf(req.room),
        };
      },
      listRooms: async () => ({ rooms: this.#roomInfos() }),
      watchRooms: (_req, ctx) => this.#watchRooms(ctx),
      listMembers: async (req) => {
        const users = [...(this.subscribers.get(req.room) ?? [])]
          .filter((s) => !s.watching)
          .map((s) => s.user);
        return {
          members: [...new Set(users)].map((user) => ({
            user,
            connections: users.filter((u) => u === user).length,
            joinedAt: timestampNow(),
          })),
        };
      },
      streamMetrics: async function* (_req, ctx) {
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      },
    });
    router.service(Health, {
      check: async () => ({ status: HealthCheckResponse_ServingStatus.SERVING }),
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
    watching = false,
  ): AsyncGenerator<Message> {
    const queue: Message[] = [];
    let wake: (() => void) | undefined;
    const entry = {
      user,
      // watch_only: follows the room without joining it (no JOIN, no LEAVE, not a member).
      watching,
      push: (m: Message) => {
        queue.push(m);
        wake?.();
      },
    };
    const set = this.subscribers.get(room) ?? new Set();
    this.subscribers.set(room, set);
    const first = !watching && ![...set].some((s) => s.user === user && !s.watching);
    set.add(entry);
    this.#roomsChanged();
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
      this.#roomsChanged();
      if (!watching && ![...set].some((s) => s.user === user && !s.watching)) {
        this.append(room, user, `${user} left`, MessageType.LEAVE);
      }
    }
  }

  /** WatchRooms: the snapshot, then every room whose counts changed (no coalescing here). */
  async *#watchRooms(ctx: HandlerContext) {
    let last = new Map(this.#roomInfos().map((r) => [r.name, r]));
    let wake: (() => void) | undefined;
    let changed = false;
    const listener = () => {
      changed = true;
      wake?.();
    };
    this.#roomWatchers.add(listener);
    try {
      yield { snapshot: true, rooms: [...last.values()], removedRooms: [] };
      while (!ctx.signal.aborted) {
        if (!changed) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            ctx.signal.addEventListener("abort", () => resolve(), { once: true });
          });
          continue;
        }
        changed = false;
        const now = new Map(this.#roomInfos().map((r) => [r.name, r]));
        const rooms = [...now.values()].filter((r) => {
          const before = last.get(r.name);
          return (
            before === undefined ||
            before.lastOffset !== r.lastOffset ||
            before.epoch !== r.epoch ||
            before.subscriberCount !== r.subscriberCount ||
            before.memberCount !== r.memberCount
          );
        });
        last = now;
        if (rooms.length > 0) yield { snapshot: false, rooms, removedRooms: [] };
      }
    } finally {
      this.#roomWatchers.delete(listener);
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
    this.headers.push(req.header);
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

  /** The network as the browser's fetch sees it: fails while the server is down. */
  #network: Interceptor = (next) => async (req) => {
    // fetch's own error; connect-web lets it through as a plain TypeError.
    if (this.#down) throw new TypeError("Failed to fetch");
    const res = await next(req);
    if (!res.stream) return res;
    const cut = this.#cut.promise;
    async function* cutOff(messages: AsyncIterable<unknown>) {
      const it = messages[Symbol.asyncIterator]();
      try {
        for (;;) {
          const next = await Promise.race([it.next(), cut]);
          if (next.done) return;
          yield next.value;
        }
      } finally {
        // Not awaited: it would queue behind the read the cut interrupted.
        void it.return?.();
      }
    }
    return { ...res, message: cutOff(res.message) } as typeof res;
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
              this.#network,
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
