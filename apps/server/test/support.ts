import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { REPO_DIR } from "./harness.js";

/** One way a client reaches the server: protocol, HTTP version, codec. */
export interface TransportCase {
  name: string;
  protocol: "connect" | "grpc" | "grpcweb";
  httpVersion: "1.1" | "2";
  useBinaryFormat: boolean;
  /**
   * Bidi RPCs (Chat) need HTTP/2: both directions stream at once. Over HTTP/1.1, connect-node
   * still runs client-streaming RPCs (it sends the whole request body, then reads the answer),
   * but the server refuses a bidi call with HTTP 505, as the Connect protocol specifies.
   */
  bidi: boolean;
}

/** Every protocol × HTTP version × codec the server answers on its one port. */
export const TRANSPORT_CASES: readonly TransportCase[] = [
  {
    name: "connect h1.1 json",
    protocol: "connect",
    httpVersion: "1.1",
    useBinaryFormat: false,
    bidi: false,
  },
  {
    name: "connect h1.1 binary",
    protocol: "connect",
    httpVersion: "1.1",
    useBinaryFormat: true,
    bidi: false,
  },
  {
    name: "connect h2 json",
    protocol: "connect",
    httpVersion: "2",
    useBinaryFormat: false,
    bidi: true,
  },
  {
    name: "connect h2 binary",
    protocol: "connect",
    httpVersion: "2",
    useBinaryFormat: true,
    bidi: true,
  },
  { name: "grpc", protocol: "grpc", httpVersion: "2", useBinaryFormat: true, bidi: true },
  {
    name: "grpc-web h1.1 binary",
    protocol: "grpcweb",
    httpVersion: "1.1",
    useBinaryFormat: true,
    bidi: false,
  },
  {
    name: "grpc-web h2 binary",
    protocol: "grpcweb",
    httpVersion: "2",
    useBinaryFormat: true,
    bidi: true,
  },
];

/** A ChatService client over `tc` (default: Connect, binary, HTTP/1.1). */
export function chatClient(
  baseUrl: string,
  tc: Pick<TransportCase, "protocol" | "httpVersion" | "useBinaryFormat"> = {
    protocol: "connect",
    httpVersion: "1.1",
    useBinaryFormat: true,
  },
): Client<typeof ChatService> {
  return createClient(ChatService, createNodeTransport({ baseUrl, ...tc }));
}

/** A LogService client over `tc`. */
export function logClient(
  baseUrl: string,
  tc: Pick<TransportCase, "protocol" | "httpVersion" | "useBinaryFormat">,
): Client<typeof LogService> {
  return createClient(LogService, createNodeTransport({ baseUrl, ...tc }));
}

/**
 * A @grpc/grpc-js ChatService client on 127.0.0.1:`port`, with the contract (proto/chat/chat.proto)
 * loaded at run time by @grpc/proto-loader (protobuf.js): no code shared with connect-es.
 * google/protobuf/timestamp.proto is not on disk in the repository: protobuf.js ships the
 * well-known types as built-in "common" definitions, so the import resolves with only proto/ on
 * includeDirs. Fields keep their snake_case names, uint64 and enums come as strings. `T` types
 * the calls the caller makes.
 */
export function grpcJsChatClient<T extends grpc.Client>(
  port: number,
  /** Where the contract is: the repository's own by default; the seed's is `contract/seed`. */
  proto: { includeDir: string; file: string } = {
    includeDir: join(REPO_DIR, "proto"),
    file: "chat/chat.proto",
  },
): T {
  const definition = protoLoader.loadSync(proto.file, {
    includeDirs: [proto.includeDir],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    chat: { ChatService: grpc.ServiceClientConstructor };
  };
  return new loaded.chat.ChatService(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  ) as unknown as T;
}

/** A room name nobody else uses. */
export function uniqueRoom(prefix = "room"): string {
  const safe = prefix.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 40);
  return `${safe}-${randomUUID().slice(0, 8)}`;
}

/** Rejects with a message naming `what` when `promise` takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The ConnectError a promise rejects with; fails when it resolves. */
export async function connectErrorOf(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, and it succeeded");
}

/** Code's name, for readable assertions (`Code[Code.InvalidArgument]` is "InvalidArgument"). */
export function codeName(code: Code): string {
  return Code[code];
}

/** A push-driven AsyncIterable for request streams: push() items, end() to close. */
export class Pushable<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private done = false;
  private wake: (() => void) | undefined;

  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }

  end(): void {
    this.done = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.done) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }
}

/** How long a test waits for a stream to end before it fails saying so, ms. */
const STREAM_END_MS = 20_000;

/**
 * Reads a server stream in the background so a test can await what arrives, with a bounded
 * wait each time, instead of sleeping. `cancel()` aborts the call.
 */
export class StreamReader<T> {
  /** Everything received so far, in order. */
  readonly received: T[] = [];
  private readonly end: Promise<ConnectError | undefined>;
  private readonly controller = new AbortController();
  private notify = new Set<() => void>();
  private endedWith: { error: ConnectError | undefined } | undefined;

  /**
   * `open` starts the call with the reader's abort signal; `what` names the stream in the
   * messages of a wait that fails ("the Chat session", …).
   */
  constructor(
    open: (signal: AbortSignal) => AsyncIterable<T>,
    private readonly what = "the stream",
  ) {
    this.end = (async () => {
      let error: ConnectError | undefined;
      try {
        for await (const item of open(this.controller.signal)) {
          this.received.push(item);
          for (const n of this.notify) n();
        }
      } catch (err) {
        error = ConnectError.from(err);
      }
      this.endedWith = { error };
      for (const n of this.notify) n();
      return error;
    })();
  }

  /**
   * Resolves when the stream ends: undefined for a clean end, else the error (as ConnectError).
   * @throws when it has not ended within 20 s, naming the stream (use {@link endedWithin} for
   *   another deadline).
   */
  get ended(): Promise<ConnectError | undefined> {
    return this.endedWithin(STREAM_END_MS);
  }

  /** {@link ended} with a deadline of `timeoutMs`. */
  endedWithin(timeoutMs: number): Promise<ConnectError | undefined> {
    return within(
      this.end,
      timeoutMs,
      `${this.what} to end (${this.received.length} items received so far)`,
    );
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Aborts the call (the client cancels). */
  cancel(): void {
    this.controller.abort();
  }

  /**
   * Resolves with the first received item at index `from` or later that matches `predicate`.
   * @throws when the stream ends first or after `timeoutMs`, naming `what` was awaited.
   */
  waitFor(
    predicate: (item: T) => boolean,
    timeoutMs = 5_000,
    from = 0,
    what = "a matching item",
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let checked = from;
      const check = (): boolean => {
        for (; checked < this.received.length; checked++) {
          const item = this.received[checked] as T;
          if (predicate(item)) {
            cleanup();
            resolve(item);
            return true;
          }
        }
        if (this.endedWith !== undefined) {
          cleanup();
          reject(
            new Error(
              `${this.what} ended (${this.endedWith.error?.message ?? "cleanly"}) before ${what}; got ${this.received.length} items`,
            ),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `${what} on ${this.what}: not within ${timeoutMs} ms (${this.received.length} items received)`,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.notify.delete(onItem);
      };
      const onItem = () => {
        check();
      };
      this.notify.add(onItem);
      check();
    });
  }

  /** Resolves once `n` items in total were received. */
  async count(n: number, timeoutMs = 5_000): Promise<T[]> {
    if (n <= 0) return this.received.slice(0, 0);
    await this.waitFor(() => true, timeoutMs, n - 1, `item ${n}`);
    return this.received.slice(0, n);
  }
}

export { Code, ConnectError };

/** google.rpc.Status from its protobuf bytes: code (1), message (2), details (3, Any). */
export function decodeStatus(bytes: Uint8Array) {
  const reader = new BinaryReader(bytes);
  const status = {
    code: 0,
    message: "",
    details: [] as Array<{ typeUrl: string; value: Uint8Array }>,
  };
  while (reader.pos < reader.len) {
    const [field] = reader.tag();
    if (field === 1) status.code = reader.int32();
    else if (field === 2) status.message = reader.string();
    else if (field === 3) {
      const any = new BinaryReader(reader.bytes());
      const detail: { typeUrl: string; value: Uint8Array } = {
        typeUrl: "",
        value: new Uint8Array(),
      };
      while (any.pos < any.len) {
        const [f] = any.tag();
        if (f === 1) detail.typeUrl = any.string();
        else detail.value = any.bytes();
      }
      status.details.push(detail);
    }
  }
  return status;
}
