import type { HistoryPage, HistoryQuery, MessageStore } from "../src/store/message-store.js";

/** When, within a history read, a racing write is let in. */
export type RaceTiming =
  /** After the page was read and before it is returned: the write is not in the page. */
  | "after-snapshot"
  /** Before the page is read: the write is in the page and in the live queue. */
  | "before-snapshot"
  /**
   * After the page was read, with the room's `lastOffset` read again afterwards (as a store does
   * whose page and last offset are two commands): the page reports an offset it does not hold.
   */
  | "split-read";

/**
 * A fake MessageStore for tests of what happens while a replay read is in flight: it wraps a
 * real store (the memory store) and, on each `read()` that `race` chooses, awaits `race`'s
 * write (a publish) at the point `timing` names, before the read resolves. The interleaving is
 * fixed, so a test of it is deterministic, unlike a race against a real store's timing.
 */
export function createRacingStore(
  inner: MessageStore,
  timing: RaceTiming,
  /** Called once per read with the read's query and index; its promise is awaited. */
  race: (query: HistoryQuery, index: number) => Promise<void>,
): MessageStore & { reads: number } {
  const store = {
    ...inner,
    reads: 0,
    async read(query: HistoryQuery, signal?: AbortSignal): Promise<HistoryPage> {
      const index = store.reads++;
      if (timing === "before-snapshot") {
        await race(query, index);
        return inner.read(query, signal);
      }
      const page = await inner.read(query, signal);
      await race(query, index);
      if (timing === "split-read") {
        const now = await inner.read({ room: query.room, limit: 1 }, signal);
        return { ...page, lastOffset: now.lastOffset };
      }
      return page;
    },
  };
  return store;
}
