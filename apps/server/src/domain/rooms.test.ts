import { type Message, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../store/memory/message-store.js";
import { createMemoryPresence } from "../store/memory/presence.js";
import type { MessageStore, RoomFeed } from "../store/message-store.js";
import {
  HistoryResetError,
  OffsetOutOfRangeError,
  SlowSubscriberError,
  ValidationError,
} from "./errors.js";
import { notReady, Rooms } from "./rooms.js";

function setup(subscriberQueueLimit = 1024) {
  const store = createMemoryStore();
  const rooms = new Rooms(store, createMemoryPresence(), {
    maxContentBytes: 4096,
    maxUserBytes: 128,
    subscriberQueueLimit,
  });
  return { store, hub: rooms.hub, rooms };
}

const send = (rooms: Rooms, room: string, content: string, user = "bob") =>
  rooms.send({ room, user, content, clientMessageId: "" });

/** Reads `n` messages from a stream, failing after 2 s instead of hanging. */
async function read(stream: AsyncIterator<Message>, n: number): Promise<Message[]> {
  const out: Message[] = [];
  const deadline = Date.now() + 2000;
  while (out.length < n) {
    const next = await Promise.race([
      stream.next(),
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`timed out after ${out.length}/${n}`)),
          deadline - Date.now(),
        ),
      ),
    ]);
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

/** `promise`, or a failure naming `what` after 2 s. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within 2000 ms`)), 2000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const summary = (ms: Message[]) => ms.map((m) => `${m.offset}:${MessageType[m.type]}:${m.content}`);

describe("Rooms", () => {
  it("stores, then fans out one shared message object to every subscriber", async () => {
    const { rooms } = setup();
    const a = await rooms.join({ room: "r", user: "alice" });
    const c = await rooms.join({ room: "r", user: "carol" });
    const sa = rooms.stream(a, undefined);
    const sc = rooms.stream(c, undefined);
    await send(rooms, "r", "hello");
    const [ma] = (await read(sa, 3)).slice(-1);
    const [mc] = (await read(sc, 2)).slice(-1);
    expect(ma?.content).toBe("hello");
    expect(ma).toBe(mc);
  });

  it("publishes JOIN for a user's first subscription and LEAVE for the last", async () => {
    const { rooms } = setup();
    const watcher = await rooms.join({ room: "r", user: "watcher" });
    const stream = rooms.stream(watcher, undefined);
    const a1 = await rooms.join({ room: "r", user: "alice" });
    const a2 = await rooms.join({ room: "r", user: "alice" });
    expect((await rooms.members("r")).find((m) => m.user === "alice")?.connections).toBe(2);
    await rooms.leave(a1, () => {});
    await rooms.leave(a2, () => {});
    expect((await rooms.members("r")).map((m) => m.user)).toEqual(["watcher"]);
    expect(summary(await read(stream, 3))).toEqual([
      "1:JOIN:watcher joined",
      "2:JOIN:alice joined",
      "3:LEAVE:alice left",
    ]);
  });

  it("with a presence grace: a resume within it stores no LEAVE or JOIN; LEAVE once it passes; none at close", async () => {
    const store = createMemoryStore();
    const rooms = new Rooms(
      store,
      createMemoryPresence((room) => store.joined(room)),
      {
        maxContentBytes: 4096,
        maxUserBytes: 128,
        subscriberQueueLimit: 1024,
        presenceGraceMs: 150,
      },
    );
    const types = async () =>
      (await store.read({ room: "g", afterOffset: 0, limit: 50 })).messages.map(
        (m) => `${m.kind.toUpperCase()}:${m.user}`,
      );
    await rooms.leave(await rooms.join({ room: "g", user: "alice" }), () => {});
    expect(await rooms.members("g")).toMatchObject([{ user: "alice", connections: 0 }]);
    await new Promise((r) => setTimeout(r, 50));
    const back = await rooms.join({ room: "g", user: "alice" });
    await new Promise((r) => setTimeout(r, 300));
    expect(await types()).toEqual(["JOIN:alice"]);
    await rooms.leave(back, () => {});
    await new Promise((r) => setTimeout(r, 300));
    expect(await types()).toEqual(["JOIN:alice", "LEAVE:alice"]);
    expect(await rooms.members("g")).toEqual([]);
    // Shutdown: a departure within its grace is not published.
    await rooms.leave(await rooms.join({ room: "g", user: "bob" }), () => {});
    rooms.close();
    await new Promise((r) => setTimeout(r, 300));
    expect(await types()).toEqual(["JOIN:alice", "LEAVE:alice", "JOIN:bob"]);
  });

  it("replays history after since_offset, then live, with no gap or duplicate at the switch", async () => {
    const { rooms } = setup();
    for (let i = 1; i <= 5; i++) await send(rooms, "r", `m${i}`);
    const sub = await rooms.join({ room: "r", user: "alice" }); // JOIN is offset 6
    // Sent after the subscriber registered but before it reads history: in history and queued.
    await send(rooms, "r", "m7");
    const stream = rooms.stream(sub, 2);
    const replayed = await read(stream, 5);
    await send(rooms, "r", "m8");
    const live = await read(stream, 1);
    expect([...replayed, ...live].map((m) => Number(m.offset))).toEqual([3, 4, 5, 6, 7, 8]);
  });

  it("a cursor polled after the replay hands out live batches without waiting, and calls back when one is queued", async () => {
    const { rooms } = setup(4);
    await send(rooms, "r", "m1");
    const sub = await rooms.join({ room: "r", user: "alice" }); // JOIN is offset 2, queued
    const cursor = rooms.cursor(sub, 0);
    // Replaying: only next() reads on, and there is nothing to call back.
    expect(cursor.poll()).toBe(notReady);
    expect(cursor.onReady(() => {})).toBe(false);
    expect(summary((await cursor.next()) ?? [])).toEqual(["1:CHAT:m1", "2:JOIN:alice joined"]);
    // The JOIN was queued as well (it came after the join): not handed out twice.
    expect(cursor.poll()).toBe(notReady);
    let woken = 0;
    expect(cursor.onReady(() => woken++)).toBe(true);
    await send(rooms, "r", "m3");
    await send(rooms, "r", "m4");
    expect(woken).toBe(1);
    expect(summary(cursor.poll() as Message[])).toEqual(["3:CHAT:m3", "4:CHAT:m4"]);
    // The overflow reaches a poller as it reaches a waiting reader: with the offset to resume from.
    for (let i = 5; i <= 9; i++) await send(rooms, "r", `m${i}`);
    expect(() => cursor.poll()).toThrow(new SlowSubscriberError(4, 4));
  });

  it("ends a subscriber that falls behind with the offset to resume from, and loses nothing", async () => {
    const { rooms, hub } = setup(4);
    const sub = await rooms.join({ room: "r", user: "slow" }); // JOIN is offset 1, queued
    const stream = rooms.stream(sub, undefined);
    expect(summary(await read(stream, 1))).toEqual(["1:JOIN:slow joined"]);
    for (let i = 0; i < 5; i++) await send(rooms, "r", `m${i}`);
    await expect(stream.next()).rejects.toEqual(new SlowSubscriberError(4, 1));
    expect(hub.slowConsumerDisconnects).toBe(1);
    // The overflowed subscriber left the hub at once; presence is released by leave().
    expect(rooms.hub.counts().get("r")).toBeUndefined();
    // Presence was released at the overflow (LEAVE stored), without waiting for the stream's
    // cleanup; the cleanup's own leave() changes nothing. The client resumes from the offset it
    // was told and gets everything it missed.
    await new Promise((r) => setTimeout(r, 10));
    expect(await rooms.members("r")).toEqual([]);
    await rooms.leave(sub, () => {});
    const again = await rooms.join({ room: "r", user: "slow" });
    const replay = await read(rooms.stream(again, 1), 7);
    expect(replay.map((m) => m.content)).toEqual([
      "m0",
      "m1",
      "m2",
      "m3",
      "m4",
      "slow left",
      "slow joined",
    ]);
  });

  it("says which offsets were trimmed from history instead of skipping them silently", async () => {
    const { store, rooms } = setup();
    for (let i = 1; i <= 6; i++) await send(rooms, "r", `m${i}`);
    // A store that trimmed offsets 1-4 (Redis trims by length and age).
    const readStore = store.read.bind(store);
    store.read = async (q) => {
      const page = await readStore(q);
      return { ...page, messages: page.messages.filter((m) => m.offset > 4) };
    };
    const sub = await rooms.join({ room: "r", user: "late" });
    expect(summary(await read(rooms.stream(sub, 1), 4))).toEqual([
      "0:SYSTEM:messages 2–4 of room r are no longer in history (trimmed)",
      "5:CHAT:m5",
      "6:CHAT:m6",
      "7:JOIN:late joined",
    ]);
  });

  it("does not count a user as present when its JOIN could not be stored", async () => {
    const { store, rooms } = setup();
    const append = store.append.bind(store);
    store.append = async () => {
      throw new Error("disk full");
    };
    await expect(rooms.join({ room: "r", user: "alice" })).rejects.toThrow("disk full");
    expect(await rooms.members("r")).toEqual([]);
    expect(rooms.hub.counts().size).toBe(0);
    // The next join is the user's first again, so it publishes JOIN.
    store.append = append;
    const sub = await rooms.join({ room: "r", user: "alice" });
    expect(summary(await read(rooms.stream(sub, 0), 1))).toEqual(["1:JOIN:alice joined"]);
  });

  it("resumes exactly at the room's last offset: nothing replayed, then live, no gap or duplicate", async () => {
    const { rooms } = setup();
    for (let i = 1; i <= 3; i++) await send(rooms, "r", `m${i}`);
    const sub = await rooms.join({ room: "r", user: "alice" }); // JOIN is offset 4, the last
    const cursor = rooms.cursor(sub, 4);
    // The replay reads the room while 4 is its last offset: nothing after it, and not out of
    // range. (The memory store answers within the turn: one macrotask settles the read.)
    const next = cursor.next();
    let failure: unknown;
    next.catch((err: unknown) => {
      failure = err;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(failure).toBeUndefined();
    // Then live: the JOIN, queued when alice joined, is at the offset she resumed from and is
    // not handed out again.
    await send(rooms, "r", "m5");
    const batch = await within(next, "the first batch after a resume at offset 4");
    expect(summary(batch ?? [])).toEqual(["5:CHAT:m5"]);
    expect(cursor.last).toBe(5);
    // One past the last offset is out of range.
    const late = await rooms.join({ room: "r", user: "bob" }); // JOIN is offset 6
    const beyond = rooms.cursor(late, 7).next();
    await expect(beyond).rejects.toBeInstanceOf(OffsetOutOfRangeError);
    await expect(beyond).rejects.toThrow("since_offset 7 is beyond the room's last offset 6");
  });

  it("refuses a since_offset beyond the room's last offset", async () => {
    const { rooms } = setup();
    await send(rooms, "r", "m1");
    const sub = await rooms.join({ room: "r", user: "alice" }); // JOIN is offset 2
    await expect(rooms.stream(sub, 7).next()).rejects.toBeInstanceOf(OffsetOutOfRangeError);
  });

  it("ends subscribers with the offset to resume from when the store's feed breaks", async () => {
    const store = createMemoryStore();
    let lose: ((err: Error) => void) | undefined;
    const watch = store.watch.bind(store);
    store.watch = async (room, feed) => {
      lose = feed.lost;
      return watch(room, feed);
    };
    const rooms = new Rooms(store, createMemoryPresence(), {
      maxContentBytes: 4096,
      maxUserBytes: 128,
      subscriberQueueLimit: 16,
    });
    const sub = await rooms.join({ room: "r", user: "alice" });
    const stream = rooms.stream(sub, undefined);
    expect(summary(await read(stream, 1))).toEqual(["1:JOIN:alice joined"]);
    lose?.(new Error("connection reset"));
    await expect(stream.next()).rejects.toThrow("resume from offset 1");
    expect(rooms.hub.counts().size).toBe(0);
  });

  it("does not deliver a session's own sends back to it", async () => {
    const { rooms } = setup();
    const origin = {};
    const me = await rooms.join({ room: "r", user: "me", origin });
    const stream = rooms.stream(me, undefined);
    await rooms.send({ room: "r", user: "me", content: "mine", clientMessageId: "" }, origin);
    await send(rooms, "r", "theirs");
    expect(summary(await read(stream, 1))).toEqual(["3:CHAT:theirs"]);
  });

  it("rejects a message over a setting's limit with the field's name", async () => {
    // The schema's rules (room pattern, required fields) are the edge's (protovalidate); the
    // domain holds the limits that are settings (domain/validation.ts).
    const { rooms } = setup();
    const bad = (input: Partial<{ room: string; user: string; content: string }>) =>
      rooms.send({ room: "r", user: "u", content: "c", clientMessageId: "", ...input });
    await expect(bad({ user: "u".repeat(129) })).rejects.toMatchObject({
      field: "user",
      message: "user is 129 bytes, over MAX_USER_BYTES (128)",
    });
    await expect(bad({ content: "é".repeat(2049) })).rejects.toBeInstanceOf(ValidationError);
    await expect(bad({ content: "é".repeat(2049) })).rejects.toMatchObject({ field: "content" });
    await expect(bad({ content: "\ud800" })).rejects.toThrow(/UTF-8/);
    await expect(bad({ content: "😀".repeat(1024) })).resolves.toMatchObject({ duplicate: false });
  });

  it("lists rooms with live subscriber counts", async () => {
    const { rooms } = setup();
    await send(rooms, "a", "x");
    await rooms.join({ room: "b", user: "u" });
    expect(await rooms.list()).toEqual([
      { name: "a", messageCount: 1, lastOffset: 1, epoch: expect.any(String), subscribers: 0 },
      { name: "b", messageCount: 1, lastOffset: 1, epoch: expect.any(String), subscribers: 1 },
    ]);
  });
});

/**
 * A store whose data can be lost while the process runs, as Redis's on FLUSHALL: `reset()`
 * swaps in an empty memory store (new epochs); open feeds stay open, as pub/sub subscriptions
 * survive FLUSHALL, and announce the new log's messages.
 */
function resettableStore(): MessageStore & { reset(): void } {
  let inner = createMemoryStore();
  const feeds = new Map<string, Set<RoomFeed>>();
  const watchInner = (room: string, feed: RoomFeed) => inner.watch(room, feed);
  const stops = new Map<RoomFeed, () => void>();
  return {
    append: (drafts, signal) => inner.append(drafts, signal),
    read: (query, signal) => inner.read(query, signal),
    rooms: () => inner.rooms(),
    joined: (room) => inner.joined(room),
    async watch(room, feed) {
      const set = feeds.get(room) ?? new Set();
      feeds.set(room, set);
      set.add(feed);
      stops.set(feed, await watchInner(room, feed));
      return () => {
        set.delete(feed);
        stops.get(feed)?.();
        stops.delete(feed);
      };
    },
    ping: async () => {},
    close: async () => {},
    reset() {
      inner = createMemoryStore();
      for (const [room, set] of feeds) {
        for (const feed of set) void watchInner(room, feed).then((stop) => stops.set(feed, stop));
      }
    },
  };
}

describe("Rooms: a room's log reset (epochs)", () => {
  function setupResettable() {
    const store = resettableStore();
    const rooms = new Rooms(store, createMemoryPresence(), {
      maxContentBytes: 4096,
      maxUserBytes: 128,
      subscriberQueueLimit: 1024,
    });
    return { store, rooms };
  }

  it("refuses a position in an epoch that is gone, with where the log stands now; serves the current one", async () => {
    const { store, rooms } = setupResettable();
    const old = await send(rooms, "r", "before");
    store.reset();
    for (let i = 1; i <= 3; i++) await send(rooms, "r", `after ${i}`);
    const current = await rooms.currentEpoch("r", "");
    expect(current).not.toBe(old.epoch);
    const refused = await rooms.currentEpoch("r", old.epoch).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(HistoryResetError);
    expect((refused as HistoryResetError).staleEpoch).toBe(old.epoch);
    expect((refused as HistoryResetError).position).toEqual({
      room: "r",
      epoch: current,
      firstOffset: 1,
      lastOffset: 3,
    });
    expect((refused as Error).message).toBe(
      `history of room r was reset (epoch ${old.epoch} is gone): its log is now epoch ${current}, offsets 1 to 3`,
    );
    expect(await rooms.currentEpoch("r", current)).toBe(current);
    await expect(
      rooms.history("r", { afterOffset: 0, limit: 9 }, undefined, old.epoch),
    ).rejects.toBeInstanceOf(HistoryResetError);
    const page = await rooms.history("r", { afterOffset: 0, limit: 9 }, undefined, current);
    expect([page.epoch, page.messages.length]).toEqual([current, 3]);
    // No epoch: served as before, whatever the log.
    expect((await rooms.history("r", { limit: 9 })).lastOffset).toBe(3);
  });

  it("ends a live subscription at a reset, after what came before, even once the new log is longer", async () => {
    const { store, rooms } = setupResettable();
    for (let i = 1; i <= 3; i++) await send(rooms, "r", `m${i}`);
    const sub = await rooms.join({ room: "r", user: "alice" }); // JOIN is offset 4
    const epoch = await rooms.currentEpoch("r", "");
    const cursor = rooms.cursor(sub, 0, undefined, epoch);
    expect(summary((await cursor.next()) ?? []).map((m) => m.split(":")[0])).toEqual([
      "1",
      "2",
      "3",
      "4",
    ]);
    await send(rooms, "r", "m5");
    store.reset();
    // The new log outgrows the old one: offsets 1-7, all of them other messages.
    for (let i = 1; i <= 7; i++) await send(rooms, "r", `new ${i}`);
    expect(summary(cursor.poll() as Message[])).toEqual(["5:CHAT:m5"]);
    const err = await cursor.next().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HistoryResetError);
    expect((err as HistoryResetError).staleEpoch).toBe(epoch);
    expect((err as HistoryResetError).position).toMatchObject({ firstOffset: 1, lastOffset: 7 });
    expect(() => cursor.poll()).toThrow(HistoryResetError);
  });

  it("a replay that meets a reset log ends the same way", async () => {
    const { store, rooms } = setupResettable();
    for (let i = 1; i <= 3; i++) await send(rooms, "r", `m${i}`);
    const sub = await rooms.join({ room: "r", user: "alice" });
    const epoch = await rooms.currentEpoch("r", "");
    store.reset();
    for (let i = 1; i <= 9; i++) await send(rooms, "r", `new ${i}`);
    await expect(rooms.cursor(sub, 2, undefined, epoch).next()).rejects.toBeInstanceOf(
      HistoryResetError,
    );
  });

  it("a cursor without an epoch (Chat) follows the new log instead: none of its messages is skipped", async () => {
    const { store, rooms } = setupResettable();
    const sub = await rooms.join({ room: "r", user: "alice" });
    const stream = rooms.stream(sub, undefined);
    await send(rooms, "r", "m2");
    await send(rooms, "r", "m3");
    expect(summary(await read(stream, 3))).toEqual([
      "1:JOIN:alice joined",
      "2:CHAT:m2",
      "3:CHAT:m3",
    ]);
    store.reset();
    await send(rooms, "r", "new 1");
    await send(rooms, "r", "new 2");
    expect(summary(await read(stream, 2))).toEqual(["1:CHAT:new 1", "2:CHAT:new 2"]);
  });

  it("a live message from a node that predates epochs (no epoch) is delivered, not taken for a reset", async () => {
    const store = createMemoryStore();
    const watch = store.watch.bind(store);
    store.watch = (room, feed) =>
      watch(room, { message: (m) => feed.message({ ...m, epoch: "" }), lost: feed.lost });
    const rooms = new Rooms(store, createMemoryPresence(), {
      maxContentBytes: 4096,
      maxUserBytes: 128,
      subscriberQueueLimit: 16,
    });
    const sub = await rooms.join({ room: "r", user: "alice" });
    const cursor = rooms.cursor(sub, 0, undefined, await rooms.currentEpoch("r", ""));
    expect(summary((await cursor.next()) ?? [])).toEqual(["1:JOIN:alice joined"]);
    await send(rooms, "r", "from an old node");
    expect(summary(cursor.poll() as Message[])).toEqual(["2:CHAT:from an old node"]);
  });

  it("an out-of-range since_offset says where the log stands", async () => {
    const { rooms } = setupResettable();
    const sent = await send(rooms, "r", "m1");
    const sub = await rooms.join({ room: "r", user: "alice" });
    const err = await rooms
      .cursor(sub, 9, undefined, sent.epoch)
      .next()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OffsetOutOfRangeError);
    expect((err as OffsetOutOfRangeError).position).toEqual({
      room: "r",
      epoch: sent.epoch,
      firstOffset: 1,
      lastOffset: 2,
    });
  });
});
