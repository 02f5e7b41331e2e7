import { describe, expect, it } from "vitest";
import { StoreUnavailableError } from "../store/message-store.js";
import { type RoomCounts, RoomDirectory, type RoomsChange } from "./room-directory.js";

const room = (
  name: string,
  lastOffset: number,
  members = 0,
  subscribers = members,
  epoch = "e1",
) => ({
  name,
  messageCount: lastOffset,
  lastOffset,
  epoch,
  members,
  subscribers,
});

/** A directory over a list the test changes, counting reads. */
function fixture(options: { pollMs?: number; coalesceMs?: number } = {}) {
  let list: RoomCounts[] = [room("a", 1)];
  let failure: Error | undefined;
  const state = { reads: 0 };
  const directory = new RoomDirectory(
    async () => {
      state.reads++;
      if (failure !== undefined) throw failure;
      return list.map((r) => ({ ...r }));
    },
    { pollMs: options.pollMs ?? 60_000, coalesceMs: options.coalesceMs ?? 20 },
  );
  return {
    directory,
    state,
    set(next: RoomCounts[]) {
      list = next;
    },
    fail(err: Error | undefined) {
      failure = err;
    },
  };
}

/** Reads `watch` in the background, keeping what arrives. */
function reader(directory: RoomDirectory) {
  const controller = new AbortController();
  const changes: RoomsChange[] = [];
  const ended = (async () => {
    try {
      for await (const change of directory.watch(controller.signal)) changes.push(change);
      return undefined;
    } catch (err) {
      return err;
    }
  })();
  return { changes, ended, stop: () => controller.abort() };
}

/** Resolves once `condition` holds; fails after `ms`, naming `what` did not happen. */
async function until(condition: () => boolean, what = "the condition", ms = 2000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The next change of `changes` (an iterator the test reads at its own pace), within 2 s. */
async function nextChange(changes: AsyncIterator<RoomsChange>, what: string): Promise<RoomsChange> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const next = await Promise.race([
      changes.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no change within 2000 ms`)), 2000);
      }),
    ]);
    if (next.done === true) throw new Error(`${what}: the watch ended`);
    return next.value;
  } finally {
    clearTimeout(timer);
  }
}

describe("RoomDirectory", () => {
  it("sends a snapshot, then only the rooms that changed, after a nudge", async () => {
    const f = fixture();
    const r = reader(f.directory);
    await until(() => r.changes.length === 1, "the snapshot");
    expect(r.changes[0]).toEqual({ snapshot: true, rooms: [room("a", 1)], removed: [] });

    f.set([room("a", 1), room("b", 1)]);
    f.directory.nudge();
    await until(() => r.changes.length === 2, "change 2");
    expect(r.changes[1]).toEqual({ snapshot: false, rooms: [room("b", 1)], removed: [] });

    // Nothing changed: a nudge sends nothing.
    f.directory.nudge();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(r.changes).toHaveLength(2);

    f.set([room("a", 1, 2, 3), room("b", 1)]);
    f.directory.nudge();
    await until(() => r.changes.length === 3, "change 3");
    expect(r.changes[2]?.rooms).toEqual([room("a", 1, 2, 3)]);
    r.stop();
    expect(await r.ended).toBeDefined();
  });

  it("coalesces: many nudges within coalesceMs are one read and one change", async () => {
    const f = fixture({ coalesceMs: 100 });
    const r = reader(f.directory);
    await until(() => r.changes.length === 1, "the snapshot");
    const readsBefore = f.state.reads;
    for (let i = 2; i <= 50; i++) {
      f.set([room("a", i)]);
      f.directory.nudge();
    }
    await until(() => r.changes.length === 2, "change 2");
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(f.state.reads - readsBefore).toBe(1);
    expect(r.changes).toHaveLength(2);
    expect(r.changes[1]?.rooms).toEqual([room("a", 50)]);
    r.stop();
  });

  it("polls for changes made elsewhere, and stops reading when nobody watches", async () => {
    const f = fixture({ pollMs: 30 });
    const r = reader(f.directory);
    await until(() => r.changes.length === 1, "the snapshot");
    f.set([room("a", 7)]);
    await until(() => r.changes.length === 2, "change 2");
    expect(r.changes[1]?.rooms).toEqual([room("a", 7)]);
    r.stop();
    await r.ended;
    await new Promise((resolve) => setTimeout(resolve, 40));
    const reads = f.state.reads;
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(f.state.reads).toBe(reads);
    expect(f.directory.watching).toBe(0);
  });

  it("a second watcher gets its own snapshot of the current list", async () => {
    const f = fixture();
    const first = reader(f.directory);
    await until(() => first.changes.length === 1, "first watcher's snapshot");
    f.set([room("a", 2)]);
    f.directory.nudge();
    await until(() => first.changes.length === 2, "first watcher's change 2");
    const second = reader(f.directory);
    await until(() => second.changes.length === 1, "second watcher's snapshot");
    expect(second.changes[0]).toEqual({ snapshot: true, rooms: [room("a", 2)], removed: [] });
    first.stop();
    second.stop();
  });

  it("ends every watcher with the store's error; a new watcher starts over", async () => {
    const f = fixture();
    const r = reader(f.directory);
    await until(() => r.changes.length === 1, "the snapshot");
    f.fail(new StoreUnavailableError("redis down"));
    f.directory.nudge();
    expect(await r.ended).toBeInstanceOf(StoreUnavailableError);
    f.fail(undefined);
    const again = reader(f.directory);
    await until(() => again.changes.length === 1, "the new watcher's snapshot");
    expect(again.changes[0]?.snapshot).toBe(true);
    again.stop();
  });
  it("hands a watcher that reads slowly each changed room once, with its newest counts", async () => {
    const f = fixture();
    const controller = new AbortController();
    const changes = f.directory.watch(controller.signal)[Symbol.asyncIterator]();
    expect(await nextChange(changes, "the snapshot")).toEqual({
      snapshot: true,
      rooms: [room("a", 1)],
      removed: [],
    });
    // Three reads while the watcher takes nothing: a changes twice, b appears.
    const reads = async (list: RoomCounts[], what: string) => {
      const before = f.state.reads;
      f.set(list);
      f.directory.nudge();
      await until(() => f.state.reads > before, what);
    };
    await reads([room("a", 2), room("b", 1)], "the read after a's first change");
    await reads([room("a", 3), room("b", 1)], "the read after a's second change");
    await reads([room("a", 3), room("b", 1)], "a read that changes nothing");
    expect(await nextChange(changes, "the merged change")).toEqual({
      snapshot: false,
      rooms: [room("a", 3), room("b", 1)],
      removed: [],
    });
    controller.abort();
  });

  it("reports a room when any one of its counts changes, alone", async () => {
    const f = fixture();
    const r = reader(f.directory);
    await until(() => r.changes.length === 1, "the snapshot");
    const base = room("a", 1, 1, 1);
    const steps: Array<[string, RoomCounts]> = [
      ["messageCount", { ...base, messageCount: 2 }],
      ["lastOffset", { ...base, messageCount: 2, lastOffset: 2 }],
      ["members", { ...base, messageCount: 2, lastOffset: 2, members: 2 }],
      ["subscribers", { ...base, messageCount: 2, lastOffset: 2, members: 2, subscribers: 3 }],
    ];
    f.set([base]);
    f.directory.nudge();
    await until(() => r.changes.length === 2, "the change to the base counts");
    for (const [field, counts] of steps) {
      const seen = r.changes.length;
      f.set([counts]);
      f.directory.nudge();
      await until(() => r.changes.length === seen + 1, `a change of ${field} alone`);
      expect(r.changes.at(-1), field).toEqual({ snapshot: false, rooms: [counts], removed: [] });
    }
    r.stop();
  });

  it("a room removed and listed again before the watcher took the removal: listed, not removed", async () => {
    const f = fixture();
    f.set([room("a", 1), room("b", 1)]);
    const controller = new AbortController();
    const changes = f.directory.watch(controller.signal)[Symbol.asyncIterator]();
    await nextChange(changes, "the snapshot");
    for (const [list, what] of [
      [[room("a", 1)], "the read without b"],
      [[room("a", 1), room("b", 2)], "the read with b again"],
    ] as const) {
      const before = f.state.reads;
      f.set([...list]);
      f.directory.nudge();
      await until(() => f.state.reads > before, what);
    }
    expect(await nextChange(changes, "the change")).toEqual({
      snapshot: false,
      rooms: [room("b", 2)],
      removed: [],
    });
    controller.abort();
  });

  it("a nudge that arrives during a read makes another read soon, not at the next poll", async () => {
    // A read the test completes by hand, returning the list as it was when the read began.
    let list: RoomCounts[] = [room("a", 1)];
    const pending: Array<() => void> = [];
    let reads = 0;
    const directory = new RoomDirectory(
      () => {
        reads++;
        const seen = list.map((r) => ({ ...r }));
        return new Promise<RoomCounts[]>((resolve) => pending.push(() => resolve(seen)));
      },
      // No poll within the test: only a nudge can make the next read.
      { pollMs: 60_000, coalesceMs: 20 },
    );
    const r = reader(directory);
    await until(() => pending.length === 1, "the first read");
    pending.shift()?.();
    await until(() => r.changes.length === 1, "the snapshot");
    // A change; its read begins, and a second change is nudged while that read is in flight.
    list = [room("a", 2)];
    directory.nudge();
    await until(() => pending.length === 1, "the read after the first nudge");
    list = [room("a", 3)];
    directory.nudge();
    pending.shift()?.();
    await until(() => r.changes.length === 2, "the change the first read saw");
    expect(r.changes[1]?.rooms).toEqual([room("a", 2)]);
    // The read began before the second change: the nudge it missed makes one more read.
    await until(() => pending.length === 1, "a read for the nudge that came during the read");
    expect(reads).toBe(3);
    pending.shift()?.();
    await until(() => r.changes.length === 3, "the second change");
    expect(r.changes[2]?.rooms).toEqual([room("a", 3)]);
    r.stop();
    await r.ended;
  });
});
