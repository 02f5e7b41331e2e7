import { describe, expect, it } from "vitest";
import type { LiveMessage, StoredMessage } from "../message-store.js";
import { SqliteFeeds } from "./feeds.js";

/** A room's log as the database holds it: offsets 1, 2, … */
function log() {
  const messages: StoredMessage[] = [];
  const reader = {
    position: (_room: string) => ({ last: messages.length, epoch: messages.length ? "e1" : "" }),
    after: (_room: string, offset: number, limit: number) => messages.slice(offset, offset + limit),
  };
  const commit = (n: number) => {
    for (let i = 0; i < n; i++) {
      const offset = messages.length + 1;
      messages.push({
        id: `m${offset}`,
        room: "r",
        user: "u",
        content: `${offset}`,
        kind: "chat",
        timestampMs: 0,
        clientMessageId: "",
        offset,
      });
    }
  };
  return { reader, commit };
}

describe("SqliteFeeds wake-ups with trace contexts (WORKERS=N, tracing on)", () => {
  it("hands each message another worker committed out with the trace its wake-up names", async () => {
    const { reader, commit } = log();
    const feeds = new SqliteFeeds(reader, {
      follow: async () => {},
      unfollow: () => {},
    });
    const got: LiveMessage[] = [];
    await feeds.watch("r", { message: (m) => got.push(m), lost: () => {} });
    commit(3);
    feeds.wake("r", 3, [[2, "00-aa-bb-01"]]);
    expect(got.map((m) => [m.offset, m.trace])).toEqual([
      [1, undefined],
      [2, "00-aa-bb-01"],
      [3, undefined],
    ]);
    // A wake-up without traces (tracing off on the sender) delivers as before.
    commit(1);
    feeds.wake("r", 4);
    expect(got.map((m) => m.offset)).toEqual([1, 2, 3, 4]);
    expect(got[3]).not.toHaveProperty("trace");
  });

  it("keeps no trace for a message already handed out (its wake-up came late)", async () => {
    const { reader, commit } = log();
    const feeds = new SqliteFeeds(reader, { follow: async () => {}, unfollow: () => {} });
    const got: LiveMessage[] = [];
    await feeds.watch("r", { message: (m) => got.push(m), lost: () => {} });
    commit(2);
    feeds.wake("r", 2);
    // The late wake-up of offset 2, then a new message 3 with its trace.
    feeds.wake("r", 2, [[2, "00-late-01"]]);
    commit(1);
    feeds.wake("r", 3, [[3, "00-new-01"]]);
    expect(got.map((m) => [m.offset, m.trace])).toEqual([
      [1, undefined],
      [2, undefined],
      [3, "00-new-01"],
    ]);
  });
});
