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

async function until(condition: () => boolean, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("RoomDirectory", () => {
  it("sends a snapshot, then only the rooms that changed, after a nudge", async () => {
    const f = fixture();
    const r = reader(f.directory);
    await until(() => r.changes.length === 1);
    expect(r.changes[0]).toEqual({ snapshot: true, rooms: [room("a", 1)], removed: [] });

    f.set([room("a", 1), room("b", 1)]);
    f.directory.nudge();
    await until(() => r.changes.length === 2);
    expect(r.changes[1]).toEqual({ snapshot: false, rooms: [room("b", 1)], removed: [] });

    // Nothing changed: a nudge sends nothing.
    f.directory.nudge();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(r.changes).toHaveLength(2);

    f.set([room("a", 1, 2, 3), room("b", 1)]);
    f.directory.nudge();
    await until(() => r.changes.length === 3);
    expect(r.changes[2]?.rooms).toEqual([room("a", 1, 2, 3)]);
    r.stop();
    expect(await r.ended).toBeDefined();
  });

  it("coalesces: many nudges within coalesceMs are one read and one change", async () => {
    const f = fixture({ coalesceMs: 100 });
    const r = reader(f.directory);
    await until(() => r.changes.length === 1);
    const readsBefore = f.state.reads;
    for (let i = 2; i <= 50; i++) {
      f.set([room("a", i)]);
      f.directory.nudge();
    }
    await until(() => r.changes.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(f.state.reads - readsBefore).toBe(1);
    expect(r.changes).toHaveLength(2);
    expect(r.changes[1]?.rooms).toEqual([room("a", 50)]);
    r.stop();
  });

  it("polls for changes made elsewhere, and stops reading when nobody watches", async () => {
    const f = fixture({ pollMs: 30 });
    const r = reader(f.directory);
    await until(() => r.changes.length === 1);
    f.set([room("a", 7)]);
    await until(() => r.changes.length === 2);
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
    await until(() => first.changes.length === 1);
    f.set([room("a", 2)]);
    f.directory.nudge();
    await until(() => first.changes.length === 2);
    const second = reader(f.directory);
    await until(() => second.changes.length === 1);
    expect(second.changes[0]).toEqual({ snapshot: true, rooms: [room("a", 2)], removed: [] });
    first.stop();
    second.stop();
  });

  it("ends every watcher with the store's error; a new watcher starts over", async () => {
    const f = fixture();
    const r = reader(f.directory);
    await until(() => r.changes.length === 1);
    f.fail(new StoreUnavailableError("redis down"));
    f.directory.nudge();
    expect(await r.ended).toBeInstanceOf(StoreUnavailableError);
    f.fail(undefined);
    const again = reader(f.directory);
    await until(() => again.changes.length === 1);
    expect(again.changes[0]?.snapshot).toBe(true);
    again.stop();
  });
});
