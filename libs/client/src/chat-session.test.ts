import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import {
  ChatService,
  HistoryResetSchema,
  type Message,
  MessageSchema,
  MessageType,
} from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it, vi } from "vitest";
import { type ChatSessionState, createChatSession } from "./chat-session.js";
import { createFailoverTransport } from "./failover-transport.js";
import type { HistoryReset } from "./history-reset.js";

const ROOM = "general";
const fast = { initialMs: 5, maxMs: 20, multiplier: 2, jitter: 0 };

/**
 * A fake ChatService over one in-memory room log, with SendMessage's idempotency and
 * SubscribeMessages' replay-then-live, and switches to break it the ways a network does.
 */
function createFakeRoom(initial: string[] = []) {
  const log: Message[] = [];
  /** The log's epoch; `reset()` starts a new log under a new one. */
  let epoch = "epoch-1";
  /** The refusal of a position not in the log, with where the log stands (as the server's). */
  const refusal = (code: Code) =>
    new ConnectError("history was reset", code, undefined, [
      {
        desc: HistoryResetSchema,
        value: {
          room: ROOM,
          epoch,
          firstOffset: log.length > 0 ? 1n : 0n,
          lastOffset: BigInt(log.length),
        },
      },
    ]);
  const keys = new Map<string, Message>();
  const listeners = new Set<() => void>();
  const calls = {
    send: 0,
    subscribe: [] as Array<bigint | undefined>,
    /** Each SubscribeMessages call's watch_only, in order. */
    watchOnly: [] as boolean[],
    /** Joins (a subscription without watch_only) and stored sends, in the order they happened. */
    events: [] as string[],
  };
  const faults = {
    /** Next SendMessage calls fail with this code before storing anything. */
    refuseSends: 0,
    /** Next SendMessage calls store the message, then fail as if the answer was lost. */
    loseAcks: 0,
    /** While true, every call fails with Unavailable (connection refused). */
    down: false,
    /** Set: SubscribeMessages fails with this (non-retriable) code. */
    subscribeError: undefined as Code | undefined,
  };
  const append = (user: string, content: string, type = MessageType.CHAT, key = "") => {
    const m = create(MessageSchema, {
      id: `m${log.length + 1}`,
      user,
      content,
      room: ROOM,
      type,
      offset: BigInt(log.length + 1),
      clientMessageId: key,
    });
    log.push(m);
    for (const wake of listeners) wake();
    return m;
  };
  for (const content of initial) append("old", content);
  const refused = () => {
    const cause = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
      code: "ECONNREFUSED",
    });
    return new ConnectError(
      "connect ECONNREFUSED 127.0.0.1:1",
      Code.Unavailable,
      undefined,
      [],
      cause,
    );
  };
  /** Ends every open subscription with Unavailable, as a server restart does. */
  const breakStreams = new Set<(err: ConnectError) => void>();

  /** One server node over the shared log; `node.down` takes only this node away. */
  const createNode = (node: { down: boolean; streams: Set<(err: ConnectError) => void> }) =>
    createRouterTransport(({ service }) => {
      service(ChatService, {
        sendMessage(req) {
          calls.send++;
          if (faults.down || node.down) throw refused();
          if (faults.refuseSends > 0) {
            faults.refuseSends--;
            throw new ConnectError("store unavailable", Code.Unavailable);
          }
          if (req.content === "")
            throw new ConnectError("content is required", Code.InvalidArgument);
          let m = req.clientMessageId === "" ? undefined : keys.get(req.clientMessageId);
          if (m === undefined) {
            calls.events.push(`send ${req.content}`);
            m = append(req.user, req.content, MessageType.CHAT, req.clientMessageId);
            if (req.clientMessageId !== "") keys.set(req.clientMessageId, m);
          }
          if (faults.loseAcks > 0) {
            faults.loseAcks--;
            throw new ConnectError("aborted", Code.Aborted);
          }
          return { messageId: m.id, offset: m.offset, epoch };
        },
        getHistory() {
          if (faults.down || node.down) throw refused();
          return { messages: [], lastOffset: BigInt(log.length), hasMore: false, epoch };
        },
        async *subscribeMessages(req, ctx) {
          calls.subscribe.push(req.sinceOffset);
          calls.watchOnly.push(req.watchOnly);
          if (faults.down || node.down) throw refused();
          if (!req.watchOnly) calls.events.push(`join ${req.user}`);
          if (faults.subscribeError !== undefined) {
            throw new ConnectError("not allowed", faults.subscribeError);
          }
          if (req.epoch !== "" && req.epoch !== epoch) throw refusal(Code.FailedPrecondition);
          if ((req.sinceOffset ?? 0n) > BigInt(log.length)) throw refusal(Code.OutOfRange);
          yield create(MessageSchema, {
            id: "system",
            user: "System",
            content: `Welcome to room ${ROOM}, ${req.user}!`,
            room: ROOM,
            type: MessageType.SYSTEM,
            epoch,
          });
          const streamEpoch = epoch;
          let next = Number(req.sinceOffset ?? BigInt(log.length));
          let failure: ConnectError | undefined;
          const fail = (err: ConnectError) => {
            failure = err;
            for (const wake of listeners) wake();
          };
          breakStreams.add(fail);
          node.streams.add(fail);
          try {
            for (;;) {
              while (next < log.length) {
                // A stream delivers one log: a reset ends it (the server checks each message).
                if (epoch !== streamEpoch) throw refusal(Code.FailedPrecondition);
                yield log[next++] as Message;
              }
              if (failure !== undefined) throw failure;
              await new Promise<void>((resolve, reject) => {
                const wake = () => {
                  listeners.delete(wake);
                  resolve();
                };
                listeners.add(wake);
                ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), {
                  once: true,
                });
              });
            }
          } finally {
            breakStreams.delete(fail);
            node.streams.delete(fail);
          }
        },
      });
    });
  const transport = createNode({ down: false, streams: new Set() });
  return {
    client: createClient(ChatService, transport),
    createNode,
    log,
    calls,
    faults,
    append,
    /** A server restart: open streams end with Unavailable, the server is down until `up()`. */
    crash() {
      faults.down = true;
      for (const fail of [...breakStreams]) {
        fail(new ConnectError("server shutting down; resume from offset 0", Code.Unavailable));
      }
    },
    up() {
      faults.down = false;
    },
    /** The store loses its data: a new, empty log with a new epoch; open streams are refused. */
    reset() {
      log.length = 0;
      keys.clear();
      epoch = `epoch-${Number(epoch.split("-")[1]) + 1}`;
      for (const fail of [...breakStreams]) fail(refusal(Code.FailedPrecondition));
    },
    get epoch() {
      return epoch;
    },
  };
}

function record() {
  const states: ChatSessionState[] = [];
  const messages: Message[] = [];
  return {
    states,
    messages,
    onStateChange: (s: ChatSessionState) => states.push(s),
    onMessage: (m: Message) => messages.push(m),
    contents: () => messages.map((m) => m.content),
    offsets: () => messages.map((m) => Number(m.offset)),
  };
}

describe("createChatSession", () => {
  it("delivers the backlog, then live messages; its own messages once, without the welcome", async () => {
    const room = createFakeRoom(["one", "two", "three"]);
    const seen = record();
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "alice",
      backlog: 2,
      backoff: fast,
      ...seen,
    });
    const ack = await session.send("hello");
    expect(ack.offset).toBe(4n);
    room.append("bob", "hi alice");
    await vi.waitFor(() => expect(seen.contents()).toContain("hi alice"));
    await session.close();
    expect(seen.contents()).toEqual(["two", "three", "hello", "hi alice"]);
    expect(seen.offsets()).toEqual([2, 3, 4, 5]);
    expect(room.log.map((m) => m.content)).toEqual(["one", "two", "three", "hello", "hi alice"]);
    expect(seen.states.map((s) => s.status)).toEqual(["connecting", "live", "closed"]);
    expect(session.state).toEqual({ status: "closed" });
    await expect(session.closed).resolves.toBeUndefined();
  });

  it("resumes the feed after a restart and stores every line typed before, during and after it once", async () => {
    const room = createFakeRoom();
    const seen = record();
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "alice",
      sinceOffset: 0n,
      backoff: fast,
      ...seen,
    });
    await session.send("before");
    room.crash();
    await vi.waitFor(() => expect(session.state.status).toBe("reconnecting"));
    const during = [session.send("during 1"), session.send("during 2")];
    // Down for a while: several failed attempts of the feed and of the sends.
    await vi.waitFor(() => expect(room.calls.subscribe.length).toBeGreaterThan(3));
    expect(session.pendingSends).toBe(2);
    room.up();
    await Promise.all(during);
    await session.send("after");
    // An acknowledgement lost on the way back: the retry carries the same key.
    room.faults.loseAcks = 1;
    const lost = await session.send("ack lost");
    await session.close();

    const chat = room.log.map((m) => m.content);
    expect(chat).toEqual(["before", "during 1", "during 2", "after", "ack lost"]);
    expect(lost.offset).toBe(5n);
    expect(seen.offsets()).toEqual([1, 2, 3, 4, 5]);
    expect(seen.contents()).toEqual(chat);
    // The feed resumed from the last offset it had delivered.
    expect(room.calls.subscribe[0]).toBe(0n);
    expect(room.calls.subscribe.slice(1).every((o) => o === 1n)).toBe(true);
    const reconnecting = seen.states.find((s) => s.status === "reconnecting");
    expect(reconnecting).toMatchObject({
      status: "reconnecting",
      attempt: 1,
      cause: "server shutting down",
    });
    // createRouterTransport does not carry the error's cause (describe-error.test.ts does).
    const refused = seen.states.filter(
      (s) => s.status === "reconnecting" && s.cause === "connect ECONNREFUSED 127.0.0.1:1",
    );
    expect(refused.length).toBeGreaterThan(0);
    expect(seen.states.at(-2)?.status).toBe("live");
  });

  it("moves to another node when one dies, with no gap and no duplicate", async () => {
    const room = createFakeRoom();
    const a = { down: false, streams: new Set<(err: ConnectError) => void>() };
    const b = { down: false, streams: new Set<(err: ConnectError) => void>() };
    const client = createClient(
      ChatService,
      createFailoverTransport([room.createNode(a), room.createNode(b)]),
    );
    const seen = record();
    const session = createChatSession(client, {
      room: ROOM,
      user: "alice",
      sinceOffset: 0n,
      backoff: fast,
      ...seen,
    });
    await session.send("on a");
    // Node a dies: its stream breaks mid-way, and it refuses connections from now on.
    a.down = true;
    for (const fail of [...a.streams]) fail(new ConnectError("aborted", Code.Aborted));
    const during = session.send("while failing over");
    room.append("bob", "stored meanwhile");
    await during;
    await session.send("on b");
    await session.close();
    // Stored once each (the two middle ones in either order), and delivered as stored.
    expect(room.log.map((m) => m.content).sort()).toEqual([
      "on a",
      "on b",
      "stored meanwhile",
      "while failing over",
    ]);
    expect(room.log.at(-1)?.content).toBe("on b");
    expect(seen.offsets()).toEqual([1, 2, 3, 4]);
    expect(seen.contents()).toEqual(room.log.map((m) => m.content));
    expect(seen.states.filter((s) => s.status === "live").length).toBeGreaterThanOrEqual(2);
  });

  it("retries a send the store refused and reports each retry", async () => {
    const room = createFakeRoom();
    const retries: string[] = [];
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "alice",
      backoff: fast,
      onSendRetry: (r) => retries.push(`${r.attempt} ${r.cause}`),
    });
    room.faults.refuseSends = 2;
    expect((await session.send("persistent")).offset).toBe(1n);
    expect(retries).toEqual(["1 store unavailable", "2 store unavailable"]);
    expect(room.calls.send).toBe(3);
    await session.close();
  });

  it("rejects a message the server refuses and goes on with the next, in order", async () => {
    const room = createFakeRoom();
    const seen = record();
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "a",
      backoff: fast,
      ...seen,
    });
    const results = await Promise.allSettled([
      session.send("first"),
      session.send(""),
      session.send("third"),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({
      code: Code.InvalidArgument,
    });
    await session.close();
    expect(seen.contents()).toEqual(["first", "third"]);
  });

  it("ends on a non-retriable feed error: closed rejects, pending sends reject with it", async () => {
    const room = createFakeRoom();
    room.faults.subscribeError = Code.PermissionDenied;
    const seen = record();
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "a",
      backoff: fast,
      ...seen,
    });
    const pending = session.send("never");
    await expect(session.closed).rejects.toMatchObject({ code: Code.PermissionDenied });
    await expect(pending).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(room.calls.send).toBe(0);
    expect(seen.states.at(-1)).toMatchObject({
      status: "closed",
      error: { code: Code.PermissionDenied },
    });
    await expect(session.send("late")).rejects.toMatchObject({ code: Code.PermissionDenied });
  });

  it("reports a history reset before the new log's messages, and follows it as the caller chose", async () => {
    const room = createFakeRoom(["old 1", "old 2"]);
    const seen = record();
    const resets: HistoryReset[] = [];
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "alice",
      sinceOffset: 0n,
      epoch: "epoch-1",
      backoff: fast,
      ...seen,
      onMessage: (m) => seen.messages.push(m),
      onHistoryReset(reset) {
        resets.push(reset);
        seen.messages.push(create(MessageSchema, { content: "RESET" }));
        return "start";
      },
    });
    await vi.waitFor(() => expect(seen.contents()).toEqual(["old 1", "old 2"]));
    expect(session.epoch).toBe("epoch-1");
    // The server restarts with its data gone; by the time the feed is back, the new log has
    // grown past the offset the session had.
    room.crash();
    room.reset();
    for (const content of ["new 1", "new 2", "new 3"]) room.append("bob", content);
    room.up();
    await vi.waitFor(() => expect(seen.contents()).toContain("new 3"));
    const ack = await session.send("after");
    expect([ack.offset, ack.epoch]).toEqual([4n, "epoch-2"]);
    await session.close();
    expect(seen.contents()).toEqual([
      "old 1",
      "old 2",
      "RESET",
      "new 1",
      "new 2",
      "new 3",
      "after",
    ]);
    expect(resets).toHaveLength(1);
    expect(resets[0]).toMatchObject({
      staleEpoch: "epoch-1",
      staleOffset: 2n,
      epoch: "epoch-2",
      firstOffset: 1n,
      lastOffset: 3n,
    });
    expect([session.epoch, session.lastOffset]).toEqual(["epoch-2", 4n]);
  });

  it("a reset while live, without onHistoryReset, closes the session with the refusal", async () => {
    const room = createFakeRoom(["old 1"]);
    const seen = record();
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "alice",
      backlog: 5,
      backoff: fast,
      ...seen,
    });
    await vi.waitFor(() => expect(seen.contents()).toEqual(["old 1"]));
    room.reset();
    room.append("bob", "new 1");
    await expect(session.closed).rejects.toMatchObject({ code: Code.FailedPrecondition });
    expect(seen.contents()).toEqual(["old 1"]);
    expect(seen.states.at(-1)).toMatchObject({
      status: "closed",
      error: { code: Code.FailedPrecondition },
    });
  });

  it("watchOnly: follows without joining, then joins before its first send, with no gap and no duplicate", async () => {
    const room = createFakeRoom(["one"]);
    const seen = record();
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "olive",
      backlog: 1,
      backoff: fast,
      watchOnly: true,
      ...seen,
    });
    await vi.waitFor(() => expect(seen.contents()).toEqual(["one"]));
    room.append("bob", "two");
    await vi.waitFor(() => expect(seen.contents()).toEqual(["one", "two"]));
    expect(session.watching).toBe(true);
    expect(room.calls.watchOnly).toEqual([true]);

    const ack = await session.send("three");
    expect(session.watching).toBe(false);
    expect(ack.offset).toBe(3n);
    room.append("bob", "four");
    await vi.waitFor(() => expect(seen.contents()).toEqual(["one", "two", "three", "four"]));
    // One new connection, joined, from the last offset delivered; JOIN before the message.
    expect(room.calls.watchOnly).toEqual([true, false]);
    expect(room.calls.subscribe.at(-1)).toBe(2n);
    expect(room.calls.events).toEqual(["join olive", "send three"]);
    expect(seen.offsets()).toEqual([1, 2, 3, 4]);
    expect(seen.states.map((s) => s.status)).toEqual(["connecting", "live"]);
    session.join();
    expect(room.calls.watchOnly).toEqual([true, false]);
    await session.close();
  });

  it("stops at once on abort: unacknowledged sends reject with Canceled", async () => {
    const room = createFakeRoom();
    const controller = new AbortController();
    const session = createChatSession(room.client, {
      room: ROOM,
      user: "a",
      backoff: { initialMs: 60_000, maxMs: 60_000, jitter: 0 },
      signal: controller.signal,
    });
    await vi.waitFor(() => expect(session.state.status).toBe("live"));
    room.faults.down = true;
    const pending = session.send("stuck");
    await vi.waitFor(() => expect(room.calls.send).toBe(1));
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: Code.Canceled });
    await expect(session.closed).resolves.toBeUndefined();
    expect(session.state).toEqual({ status: "closed" });
    await expect(session.send("after")).rejects.toMatchObject({
      code: Code.FailedPrecondition,
    });
  });
});
