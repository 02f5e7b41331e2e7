import { type Message, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createRacingStore, type RaceTiming } from "../../test/racing-store.js";
import { createSubscriptions } from "../services/subscription.js";
import { createMemoryStore } from "../store/memory/message-store.js";
import { createMemoryPresence } from "../store/memory/presence.js";
import type { MessageStore } from "../store/message-store.js";
import { Telemetry } from "../telemetry/telemetry.js";
import { Rooms } from "./rooms.js";

// A publish that lands while a subscription's replay read is in flight: the subscriber must get
// every offset once, in order, whether the write is in the page it reads, after it, or only in
// the room's last offset. The fake store lets the write in at a fixed point of the read, so
// each interleaving runs the same way every time (a real store only shows it by timing).

const LIMITS = { maxContentBytes: 4096, maxUserBytes: 128, subscriberQueueLimit: 4096 };
const TIMINGS: RaceTiming[] = ["after-snapshot", "before-snapshot", "split-read"];

/** Rooms on a racing store; `publish` sends `n` messages into `room` during each replay read. */
function setup(timing: RaceTiming, publishPerRead: number, racingReads = 1) {
  let rooms: Rooms | undefined;
  let racing = false;
  const store = createRacingStore(createMemoryStore(), timing, async (query, index) => {
    if (!racing || index >= racingReads) return;
    for (let i = 0; i < publishPerRead; i++) {
      await rooms?.send({
        room: query.room,
        user: "racer",
        content: `race${index}.${i}`,
        clientMessageId: "",
      });
    }
  });
  rooms = new Rooms(store as MessageStore, createMemoryPresence(), LIMITS);
  return {
    rooms,
    store,
    /** Let the next reads race (the history before is written without racing). */
    arm: () => {
      racing = true;
      store.reads = 0;
    },
  };
}

const send = (rooms: Rooms, room: string, content: string) =>
  rooms.send({ room, user: "bob", content, clientMessageId: "" });

/** Offsets of stored messages (SYSTEM ones are offset 0 and skipped). */
const offsets = (ms: Message[]) =>
  ms.filter((m) => m.type !== MessageType.SYSTEM).map((m) => Number(m.offset));
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Reads batches until `n` stored messages arrived (or 2 s passed, which fails the test). */
async function take(next: () => Promise<Message[] | undefined>, n: number): Promise<Message[]> {
  const out: Message[] = [];
  const deadline = Date.now() + 2_000;
  while (offsets(out).length < n) {
    const batch = await Promise.race([
      next(),
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`timed out with ${offsets(out)}`)),
          deadline - Date.now(),
        ),
      ),
    ]);
    if (batch === undefined) break;
    out.push(...batch);
  }
  return out;
}

describe.each(TIMINGS)("a publish during a replay read (%s)", (timing) => {
  it("Rooms.cursor: every offset once, in order, then live", async () => {
    const { rooms, arm, store } = setup(timing, 2);
    for (let i = 1; i <= 5; i++) await send(rooms, "r", `m${i}`);
    const sub = await rooms.join({ room: "r", user: "alice" }); // JOIN: offset 6
    arm();
    const cursor = rooms.cursor(sub, 2);
    // Replay 3–6 and the two racing publishes (7, 8), then a live one (9).
    const first = await take(() => cursor.next(), 6);
    expect(store.reads).toBeGreaterThan(0);
    await send(rooms, "r", "live");
    const rest = await take(() => cursor.next(), 1);
    expect(offsets([...first, ...rest])).toEqual(range(3, 9));
  });

  it("Rooms.cursor over several replay pages, a publish during each page's read", async () => {
    // REPLAY_PAGE is 500: 1,200 messages are three pages; every read lets 3 publishes in.
    const { rooms, arm, store } = setup(timing, 3, 10);
    const drafts = Array.from({ length: 1_200 }, (_, i) => send(rooms, "big", `m${i}`));
    await Promise.all(drafts);
    const sub = await rooms.join({ room: "big", user: "alice" }); // JOIN: 1201
    arm();
    const cursor = rooms.cursor(sub, 0);
    const got = await take(() => cursor.next(), 1_201 + 3 * 3);
    expect(store.reads).toBeGreaterThanOrEqual(3);
    const seen = offsets(got);
    expect(seen.length).toBe(new Set(seen).size);
    expect(seen).toEqual(range(1, seen.length));
    expect(seen.length).toBe(1_201 + 3 * store.reads);
  });

  it("a SubscribeMessages subscription (services/subscription.ts): welcome, then no gap or duplicate", async () => {
    const { rooms, arm } = setup(timing, 2);
    for (let i = 1; i <= 3; i++) await send(rooms, "s", `m${i}`);
    const telemetry = new Telemetry({ requests: () => 0, ...rooms.counts });
    const subscribe = createSubscriptions({ rooms, telemetry, logger: pino({ level: "silent" }) });
    const controller = new AbortController();
    arm();
    try {
      const subscription = await subscribe(
        {
          $typeName: "chat.SubscribeRequest",
          room: "s",
          user: "carol",
          sinceOffset: 1n,
          epoch: "",
        },
        controller.signal,
      );
      // The welcome, replay 2–4 (4: JOIN) and the racing 5, 6; then one live (7).
      const first = await take(() => subscription.next(), 5);
      expect(first[0]?.content).toBe("Welcome to room s, carol!");
      await send(rooms, "s", "live");
      const rest = await take(() => subscription.next(), 1);
      expect(offsets([...first, ...rest])).toEqual(range(2, 7));
      subscription.close(undefined);
    } finally {
      controller.abort();
      telemetry.close();
      rooms.close();
    }
  });
});
