import { create } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type HandlerContext,
} from "@connectrpc/connect";
import {
  ChatService,
  HistoryResetSchema,
  type Message,
  MessageSchema,
  MessageType,
  type SubscribeRequest,
} from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it, vi } from "vitest";
import { createBackoff } from "./backoff.js";
import { type HistoryReset, historyResetOf } from "./history-reset.js";
import {
  type SubscriptionState,
  type SubscriptionStateDetail,
  subscribeResumable,
} from "./resumable-subscription.js";

const ROOM = "general";

function stored(offset: number): Message {
  return create(MessageSchema, {
    id: `m${offset}`,
    user: "alice",
    content: `message ${offset}`,
    room: ROOM,
    type: MessageType.CHAT,
    offset: BigInt(offset),
  });
}

function welcome(epoch = ""): Message {
  return create(MessageSchema, {
    id: "system",
    user: "System",
    content: `Welcome to room ${ROOM}!`,
    room: ROOM,
    type: MessageType.SYSTEM,
    epoch,
  });
}

/** The server's refusal of a position not in the room's log, with where the log stands. */
function refusal(code: Code, epoch: string, firstOffset: bigint, lastOffset: bigint) {
  return new ConnectError(`history of room ${ROOM} was reset`, code, undefined, [
    { desc: HistoryResetSchema, value: { room: ROOM, epoch, firstOffset, lastOffset } },
  ]);
}

type Connection = (req: SubscribeRequest, ctx: HandlerContext) => AsyncIterable<Message>;

/** Resolves when the call is cancelled; the fake's way of "staying connected". */
function untilAborted(ctx: HandlerContext): Promise<never> {
  return new Promise((_, reject) => {
    ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
  });
}

/**
 * A fake ChatService whose n-th SubscribeMessages call behaves as `connections[n]`; calls past
 * the script stay open until cancelled. Records every request and whether each call saw its
 * cancellation.
 */
function createFakeChat(connections: Connection[], lastOffset = 0n, epoch = "") {
  const requests: SubscribeRequest[] = [];
  const aborted: boolean[] = [];
  let historyCalls = 0;
  const transport = createRouterTransport(({ service }) => {
    service(ChatService, {
      async *subscribeMessages(req, ctx) {
        const index = requests.length;
        requests.push(req);
        aborted.push(false);
        ctx.signal.addEventListener("abort", () => {
          aborted[index] = true;
        });
        const connection = connections[index];
        if (connection === undefined) {
          yield welcome();
          await untilAborted(ctx);
          return;
        }
        yield* connection(req, ctx);
      },
      getHistory() {
        historyCalls++;
        return { messages: [], lastOffset, hasMore: false, epoch };
      },
    });
  });
  return {
    client: createClient(ChatService, transport),
    requests,
    aborted,
    historyCalls: () => historyCalls,
  };
}

/** Serves a welcome, then `offsets`, then ends with `error` (or cleanly when undefined). */
function serve(offsets: number[], error?: ConnectError, epoch = ""): Connection {
  return async function* () {
    yield welcome(epoch);
    for (const offset of offsets) yield stored(offset);
    if (error !== undefined) throw error;
  };
}

function recordStates() {
  const states: Array<{ state: SubscriptionState; detail?: SubscriptionStateDetail }> = [];
  const onStateChange = (state: SubscriptionState, detail?: SubscriptionStateDetail) => {
    states.push(detail === undefined ? { state } : { state, detail });
  };
  return { states, onStateChange };
}

const fast = { initialMs: 1, maxMs: 8, multiplier: 2, jitter: 0 };

describe("subscribeResumable", () => {
  it("yields every stored message once, in order, across broken connections", async () => {
    const fake = createFakeChat([
      serve([1, 2, 3], new ConnectError("connection reset", Code.Unavailable)),
      // A server that replays too much: 2 and 3 again must be dropped.
      serve(
        [2, 3, 4, 5, 6],
        new ConnectError("slow consumer; resume from offset 6", Code.ResourceExhausted),
      ),
      serve([7, 8]), // ends cleanly without being asked to
      serve([9, 10], new ConnectError("stream reset", Code.Internal)),
    ]);
    const { states, onStateChange } = recordStates();
    const seen: Message[] = [];
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      { backoff: fast, onStateChange },
    )) {
      seen.push(m);
      if (m.offset === 10n) break;
    }
    expect(seen.map((m) => m.offset)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]);
    // Stored messages only: the four welcomes came with the four `live` states.
    expect(seen.filter((m) => m.type === MessageType.SYSTEM)).toEqual([]);
    const lives = states.filter((s) => s.state === "live").map((s) => s.detail?.welcome);
    expect(lives.map((w) => [w?.id, w?.offset, w?.content])).toEqual(
      Array(4).fill(["system", 0n, `Welcome to room ${ROOM}!`]),
    );
    expect(fake.requests.map((r) => r.sinceOffset)).toEqual([0n, 3n, 6n, 8n]);
    expect(fake.requests.every((r) => r.room === ROOM && r.user === "bob")).toBe(true);
    expect(fake.historyCalls()).toBe(0);
    expect(states.map((s) => s.state)).toEqual([
      "connecting",
      "live",
      "reconnecting",
      "live",
      "reconnecting",
      "live",
      "reconnecting",
      "live",
      "closed",
    ]);
    const retries = states.filter((s) => s.state === "reconnecting").map((s) => s.detail);
    expect(retries.map((d) => d?.error?.code)).toEqual([
      Code.Unavailable,
      Code.ResourceExhausted,
      Code.Unavailable,
    ]);
    // Each connection delivered something, so each retry starts the backoff again.
    expect(retries.map((d) => [d?.attempt, d?.delayMs])).toEqual([
      [1, 1],
      [1, 1],
      [1, 1],
    ]);
    expect(states.at(-1)).toEqual({ state: "closed" });
  });

  it("backs off exponentially while connections fail before delivering anything", async () => {
    const refused = async function* (): AsyncGenerator<Message> {
      yield* [];
      throw new ConnectError("connect ECONNREFUSED", Code.Unavailable);
    };
    const fake = createFakeChat([refused, refused, refused, refused, serve([5])]);
    const { states, onStateChange } = recordStates();
    const seen: bigint[] = [];
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 4n },
      { backoff: fast, onStateChange },
    )) {
      seen.push(m.offset);
      if (m.offset === 5n) break;
    }
    expect(seen).toEqual([5n]);
    expect(fake.requests.map((r) => r.sinceOffset)).toEqual([4n, 4n, 4n, 4n, 4n]);
    const retries = states.filter((s) => s.state === "reconnecting").map((s) => s.detail);
    expect(retries.map((d) => [d?.attempt, d?.delayMs])).toEqual([
      [1, 1],
      [2, 2],
      [3, 4],
      [4, 8],
    ]);
  });

  it.each(
    [
      Code.Unavailable,
      Code.Internal,
      Code.Unknown,
      Code.DeadlineExceeded,
      Code.ResourceExhausted,
      Code.Aborted,
      Code.Canceled,
    ].map((code) => [Code[code], code] as const),
  )("retries %s from the server", async (_name, code) => {
    const fake = createFakeChat([serve([1], new ConnectError("server said so", code)), serve([2])]);
    const seen: bigint[] = [];
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      { backoff: fast },
    )) {
      seen.push(m.offset);
      if (m.offset === 2n) break;
    }
    expect(seen).toEqual([1n, 2n]);
    expect(fake.requests.map((r) => r.sinceOffset)).toEqual([0n, 1n]);
  });

  it("pins a subscription without sinceOffset to the room's last offset, so a retry loses nothing", async () => {
    const fake = createFakeChat(
      [serve([], new ConnectError("reset", Code.Unavailable)), serve([42, 43])],
      41n,
    );
    const seen: bigint[] = [];
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob" },
      { backoff: fast },
    )) {
      seen.push(m.offset);
      if (m.offset === 43n) break;
    }
    expect(seen).toEqual([42n, 43n]);
    expect(fake.historyCalls()).toBe(1);
    expect(fake.requests.map((r) => r.sinceOffset)).toEqual([41n, 41n]);
  });

  it("ends with a non-retriable error after the messages before it", async () => {
    const fake = createFakeChat([
      serve([1], new ConnectError("token revoked", Code.PermissionDenied)),
    ]);
    const { states, onStateChange } = recordStates();
    const seen: bigint[] = [];
    const run = async () => {
      for await (const m of subscribeResumable(
        fake.client,
        { room: ROOM, user: "bob", sinceOffset: 0n },
        { backoff: fast, onStateChange },
      )) {
        seen.push(m.offset);
      }
    };
    const error = await run().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.PermissionDenied);
    expect((error as ConnectError).rawMessage).toBe("token revoked");
    expect(seen).toEqual([1n]);
    expect(fake.requests).toHaveLength(1);
    expect(states.map((s) => s.state)).toEqual(["connecting", "live", "closed"]);
    expect(states.at(-1)?.detail?.error?.code).toBe(Code.PermissionDenied);
  });

  it.each(
    [Code.InvalidArgument, Code.NotFound, Code.Unauthenticated, Code.Unimplemented].map(
      (code) => [Code[code], code] as const,
    ),
  )("does not retry %s", async (_name, code) => {
    const fake = createFakeChat([
      // biome-ignore lint/correctness/useYield: fails before its first message, like validation
      async function* () {
        throw new ConnectError("no", code);
      },
    ]);
    const iterator = subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      { backoff: fast },
    );
    await expect(iterator.next()).rejects.toMatchObject({ code });
    expect(fake.requests).toHaveLength(1);
  });

  it("ends cleanly on abort while live: the loop finishes without an error, the call is cancelled", async () => {
    // Live and waiting for the next message: 1 and 2 delivered, then the stream stays open.
    const fake = createFakeChat([
      async function* (_req, ctx) {
        yield welcome();
        yield* [stored(1), stored(2)];
        await untilAborted(ctx);
      },
    ]);
    const controller = new AbortController();
    const { states, onStateChange } = recordStates();
    const seen: bigint[] = [];
    const loop = (async () => {
      for await (const m of subscribeResumable(
        fake.client,
        { room: ROOM, user: "bob", sinceOffset: 0n },
        { backoff: fast, onStateChange, signal: controller.signal },
      )) {
        seen.push(m.offset);
      }
      return "finished";
    })();
    await vi.waitFor(() => expect(seen).toEqual([1n, 2n]));
    controller.abort();
    await expect(loop).resolves.toBe("finished");
    expect(fake.requests).toHaveLength(1);
    await vi.waitFor(() => expect(fake.aborted[0]).toBe(true));
    expect(states.map((s) => s.state)).toEqual(["connecting", "live", "closed"]);
    expect(states.at(-1)).toEqual({ state: "closed" });
  });

  it("ends cleanly whatever the abort's reason (AbortSignal.timeout, a caller's own error)", async () => {
    for (const signal of [
      AbortSignal.timeout(20),
      AbortSignal.abort(new ConnectError("stop", Code.PermissionDenied)),
      AbortSignal.abort(new Error("shutting down")),
    ]) {
      const fake = createFakeChat([]);
      const seen: Message[] = [];
      for await (const m of subscribeResumable(
        fake.client,
        { room: ROOM, user: "bob", sinceOffset: 0n },
        { backoff: fast, signal },
      )) {
        seen.push(m);
      }
      expect(seen).toEqual([]);
      expect(signal.aborted).toBe(true);
    }
  });

  it("yields nothing after an abort made while the consumer holds a message", async () => {
    // A stream that has 1-5 at hand (connect-es buffers what arrived) and ignores the abort.
    const buffered = {
      async *subscribeMessages() {
        yield welcome();
        for (const offset of [1, 2, 3, 4, 5]) yield stored(offset);
      },
    } as unknown as Client<typeof ChatService>;
    const controller = new AbortController();
    const seen: bigint[] = [];
    for await (const m of subscribeResumable(
      buffered,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      { backoff: fast, signal: controller.signal },
    )) {
      seen.push(m.offset);
      if (m.offset === 2n) controller.abort();
    }
    expect(seen).toEqual([1n, 2n]);
  });

  it("ends cleanly on abort during the backoff delay, without connecting again", async () => {
    const fake = createFakeChat([serve([1], new ConnectError("gone", Code.Unavailable))]);
    const controller = new AbortController();
    const { states, onStateChange } = recordStates();
    const iterator = subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      {
        backoff: { initialMs: 60_000, maxMs: 60_000, jitter: 0 },
        signal: controller.signal,
        onStateChange: (state, detail) => {
          onStateChange(state, detail);
          if (state === "reconnecting") setTimeout(() => controller.abort(), 10);
        },
      },
    );
    expect((await iterator.next()).value?.offset).toBe(1n);
    const started = Date.now();
    await expect(iterator.next()).resolves.toEqual({ done: true, value: undefined });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(fake.requests).toHaveLength(1);
    expect(states.map((s) => s.state)).toEqual(["connecting", "live", "reconnecting", "closed"]);
    expect(states.at(-1)).toEqual({ state: "closed" });
  });

  it("ends cleanly when aborted before it starts, without calling the server", async () => {
    const fake = createFakeChat([]);
    const iterator = subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob" },
      { signal: AbortSignal.abort() },
    );
    await expect(iterator.next()).resolves.toEqual({ done: true, value: undefined });
    expect(fake.requests).toHaveLength(0);
    expect(fake.historyCalls()).toBe(0);
  });

  it("cancels the call when the consumer stops iterating", async () => {
    const fake = createFakeChat([
      async function* (_req, ctx) {
        yield welcome();
        yield stored(1);
        await untilAborted(ctx);
      },
    ]);
    const { states, onStateChange } = recordStates();
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      { onStateChange },
    )) {
      expect(m.offset).toBe(1n);
      break;
    }
    await vi.waitFor(() => expect(fake.aborted[0]).toBe(true));
    expect(states).toEqual([
      { state: "connecting" },
      { state: "live", detail: { epoch: "", welcome: welcome() } },
      { state: "closed" },
    ]);
  });

  it("does not take a stored SYSTEM message for a welcome, nor a connection's first stored message", async () => {
    const notice = create(MessageSchema, { ...stored(1), type: MessageType.SYSTEM });
    const fake = createFakeChat([
      async function* () {
        yield notice; // a server without a welcome: the first message is a stored one
        yield stored(2);
      },
    ]);
    const { states, onStateChange } = recordStates();
    const seen: Message[] = [];
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      { backoff: fast, onStateChange },
    )) {
      seen.push(m);
      if (m.offset === 2n) break;
    }
    expect(seen.map((m) => [m.offset, m.type])).toEqual([
      [1n, MessageType.SYSTEM],
      [2n, MessageType.CHAT],
    ]);
    expect(states[1]).toEqual({ state: "live", detail: { epoch: "" } });
  });
});

describe("subscribeResumable: epochs (a room's log reset)", () => {
  it("keeps the epoch of its offset (each welcome's) and sends both when it resumes", async () => {
    const fake = createFakeChat([
      serve([1, 2], new ConnectError("connection reset", Code.Unavailable), "E1"),
      serve([3], new ConnectError("connection reset", Code.Unavailable), "E1"),
      serve([4], undefined, "E1"),
    ]);
    const { states, onStateChange } = recordStates();
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      { backoff: fast, onStateChange },
    )) {
      if (m.offset === 4n) break;
    }
    expect(fake.requests.map((r) => [r.sinceOffset, r.epoch])).toEqual([
      [0n, ""],
      [2n, "E1"],
      [3n, "E1"],
    ]);
    expect(states.filter((s) => s.state === "live").map((s) => s.detail?.epoch)).toEqual([
      "E1",
      "E1",
      "E1",
    ]);
  });

  it("a reset refusal: tells the caller before anything of the new log, then follows it from where it chose", async () => {
    const fake = createFakeChat([
      serve([1, 2, 3], new ConnectError("server restarted", Code.Unavailable), "E1"),
      // The new log has grown past offset 3 already: 1-5 are other messages.
      // biome-ignore lint/correctness/useYield: refused before its first message, as the server does
      async function* () {
        throw refusal(Code.FailedPrecondition, "E2", 1n, 5n);
      },
      serve([1, 2, 3, 4, 5, 6], undefined, "E2"),
    ]);
    const seen: string[] = [];
    const resets: HistoryReset[] = [];
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      {
        backoff: fast,
        onHistoryReset(reset) {
          resets.push(reset);
          seen.push("reset");
          return "start";
        },
      },
    )) {
      seen.push(String(m.offset));
      if (seen.length === 10) break;
    }
    expect(seen).toEqual(["1", "2", "3", "reset", "1", "2", "3", "4", "5", "6"]);
    expect(resets).toHaveLength(1);
    expect(resets[0]).toMatchObject({
      room: ROOM,
      staleEpoch: "E1",
      staleOffset: 3n,
      epoch: "E2",
      firstOffset: 1n,
      lastOffset: 5n,
    });
    expect(resets[0]?.error.code).toBe(Code.FailedPrecondition);
    expect(fake.requests.map((r) => [r.sinceOffset, r.epoch])).toEqual([
      [0n, ""],
      [3n, "E1"],
      [0n, "E2"],
    ]);
  });

  it("follows the new log from its end when the caller says so", async () => {
    const fake = createFakeChat([
      // biome-ignore lint/correctness/useYield: refused before its first message
      async function* () {
        throw refusal(Code.FailedPrecondition, "E2", 1n, 5n);
      },
      serve([6], undefined, "E2"),
    ]);
    const seen: bigint[] = [];
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob", sinceOffset: 9n, epoch: "E1" },
      { backoff: fast, onHistoryReset: () => "end" },
    )) {
      seen.push(m.offset);
      if (m.offset === 6n) break;
    }
    expect(seen).toEqual([6n]);
    expect(fake.requests.map((r) => [r.sinceOffset, r.epoch])).toEqual([
      [9n, "E1"],
      [5n, "E2"],
    ]);
  });

  it("without onHistoryReset (or when it says stop), ends with the refusal; never goes on", async () => {
    for (const onHistoryReset of [undefined, () => "stop" as const]) {
      const fake = createFakeChat([
        serve([1, 2], refusal(Code.FailedPrecondition, "E2", 1n, 1n), "E1"),
        serve([1], undefined, "E2"),
      ]);
      const seen: bigint[] = [];
      const error = await (async () => {
        for await (const m of subscribeResumable(
          fake.client,
          { room: ROOM, user: "bob", sinceOffset: 0n },
          { backoff: fast, ...(onHistoryReset === undefined ? {} : { onHistoryReset }) },
        )) {
          seen.push(m.offset);
        }
      })().catch((err: unknown) => err);
      expect(error).toMatchObject({ code: Code.FailedPrecondition });
      expect(historyResetOf(error)).toEqual({
        room: ROOM,
        epoch: "E2",
        firstOffset: 1n,
        lastOffset: 1n,
      });
      expect(seen).toEqual([1n, 2n]);
      expect(fake.requests).toHaveLength(1);
    }
  });

  it("takes OutOfRange on a resume in a known epoch as a reset (offsets went back); not for an offset the caller gave without one", async () => {
    const rolledBack = createFakeChat([
      serve([1, 2, 3], new ConnectError("master failed", Code.Unavailable), "E1"),
      // biome-ignore lint/correctness/useYield: refused before its first message
      async function* () {
        throw refusal(Code.OutOfRange, "E1", 1n, 2n);
      },
      serve([1, 2], undefined, "E1"),
    ]);
    const resets: HistoryReset[] = [];
    for await (const m of subscribeResumable(
      rolledBack.client,
      { room: ROOM, user: "bob", sinceOffset: 0n },
      {
        backoff: fast,
        onHistoryReset: (r) => {
          resets.push(r);
          return "start";
        },
      },
    )) {
      if (resets.length === 1 && m.offset === 2n) break;
    }
    expect(resets.map((r) => [r.staleEpoch, r.staleOffset, r.epoch, r.lastOffset])).toEqual([
      ["E1", 3n, "E1", 2n],
    ]);

    const callersOwn = createFakeChat([
      // biome-ignore lint/correctness/useYield: refused before its first message
      async function* () {
        throw refusal(Code.OutOfRange, "E1", 1n, 2n);
      },
    ]);
    const told: HistoryReset[] = [];
    const iterator = subscribeResumable(
      callersOwn.client,
      { room: ROOM, user: "bob", sinceOffset: 7n },
      {
        backoff: fast,
        onHistoryReset: (r) => {
          told.push(r);
          return "start";
        },
      },
    );
    await expect(iterator.next()).rejects.toMatchObject({ code: Code.OutOfRange });
    expect(told).toEqual([]);
  });

  it("pins a subscription without sinceOffset to the room's last offset and its epoch", async () => {
    const fake = createFakeChat(
      [serve([], new ConnectError("reset", Code.Unavailable), "E7"), serve([42], undefined, "E7")],
      41n,
      "E7",
    );
    for await (const m of subscribeResumable(
      fake.client,
      { room: ROOM, user: "bob" },
      { backoff: fast },
    )) {
      if (m.offset === 42n) break;
    }
    expect(fake.requests.map((r) => [r.sinceOffset, r.epoch])).toEqual([
      [41n, "E7"],
      [41n, "E7"],
    ]);
  });
});

describe("createBackoff", () => {
  it("grows by the multiplier up to the maximum and starts again on reset", () => {
    const backoff = createBackoff({ initialMs: 100, maxMs: 500, multiplier: 2, jitter: 0 });
    expect([backoff.next(), backoff.next(), backoff.next(), backoff.next()]).toEqual([
      100, 200, 400, 500,
    ]);
    backoff.reset();
    expect(backoff.next()).toBe(100);
  });

  it("spreads each delay by at most the jitter fraction", () => {
    const low = createBackoff({ initialMs: 1000, jitter: 0.2 }, () => 0);
    const high = createBackoff({ initialMs: 1000, jitter: 0.2 }, () => 0.999_999);
    expect(low.next()).toBe(800);
    expect(high.next()).toBe(1200);
  });

  it("rejects settings that cannot make a sequence", () => {
    expect(() => createBackoff({ multiplier: 0.5 })).toThrow(RangeError);
    expect(() => createBackoff({ jitter: 2 })).toThrow(RangeError);
    expect(() => createBackoff({ initialMs: 10, maxMs: 5 })).toThrow(RangeError);
  });
});
