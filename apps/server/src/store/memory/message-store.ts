import { newEpoch } from "../epoch.js";
import type {
  AppendResult,
  HistoryPage,
  JoinedMember,
  LiveMessage,
  MessageStore,
  RoomStats,
} from "../message-store.js";
import { LocalFeeds } from "./local-feeds.js";

/**
 * A store that keeps every room in memory and loses it at exit (STORE=memory): for tests,
 * benchmarks and throwaway runs. Same semantics as the SQLite store, offsets included. A room's
 * epoch is drawn when its first message is stored, so every process start gives every room log a
 * new one: a client resuming after a restart is told its log is gone.
 */
export function createMemoryStore(): MessageStore {
  const rooms = new Map<
    string,
    {
      /** The log's epoch; "" until its first message. */
      epoch: string;
      messages: LiveMessage[];
      byKey: Map<string, LiveMessage>;
      /** user → when their stored JOIN was accepted (a JOIN with no later LEAVE). */
      joined: Map<string, number>;
    }
  >();
  const roomOf = (name: string) => {
    let room = rooms.get(name);
    if (room === undefined) {
      room = { epoch: "", messages: [], byKey: new Map(), joined: new Map() };
      rooms.set(name, room);
    }
    return room;
  };
  const feeds = new LocalFeeds();
  return {
    async append(drafts, signal): Promise<AppendResult[]> {
      signal?.throwIfAborted();
      const results = drafts.map((draft) => {
        const room = roomOf(draft.room);
        const earlier =
          draft.clientMessageId === "" ? undefined : room.byKey.get(draft.clientMessageId);
        if (earlier !== undefined) return { message: earlier, duplicate: true, epoch: room.epoch };
        if (draft.kind !== "chat") {
          // A JOIN for a joined user, or a LEAVE for one who is not, is not stored.
          if (room.joined.has(draft.user) === (draft.kind === "join")) {
            return { message: { ...draft, offset: 0 }, duplicate: true, epoch: room.epoch };
          }
          if (draft.kind === "join") room.joined.set(draft.user, draft.timestampMs);
          else room.joined.delete(draft.user);
        }
        if (room.epoch === "") room.epoch = newEpoch();
        const message = { ...draft, offset: room.messages.length + 1, epoch: room.epoch };
        room.messages.push(message);
        if (draft.clientMessageId !== "") room.byKey.set(draft.clientMessageId, message);
        return { message, duplicate: false, epoch: room.epoch };
      });
      feeds.announce(results.filter((r) => !r.duplicate).map((r) => r.message as LiveMessage));
      return results;
    },
    async read({ room: name, afterOffset, beforeOffset, limit }, signal): Promise<HistoryPage> {
      signal?.throwIfAborted();
      const room = rooms.get(name);
      const messages = room?.messages ?? [];
      const epoch = room?.epoch ?? "";
      const last = messages.length;
      // Offsets are 1-based array positions: message n is messages[n - 1].
      const end = Math.min(last, (beforeOffset ?? Number.MAX_SAFE_INTEGER) - 1);
      if (afterOffset !== undefined) {
        const start = Math.min(afterOffset, end);
        const page = messages.slice(start, Math.min(end, start + limit));
        return { messages: page, lastOffset: last, hasMore: start + page.length < end, epoch };
      }
      const start = Math.max(0, end - limit);
      return {
        messages: messages.slice(start, Math.max(end, 0)),
        lastOffset: last,
        hasMore: start > 0,
        epoch,
      };
    },
    async rooms(): Promise<RoomStats[]> {
      return [...rooms.entries()]
        .filter(([, room]) => room.messages.length > 0)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([name, room]) => ({
          name,
          messageCount: room.messages.length,
          lastOffset: room.messages.length,
          epoch: room.epoch,
        }));
    },
    async joined(name) {
      const out: JoinedMember[] = [];
      for (const [room, state] of rooms) {
        if (name !== undefined && room !== name) continue;
        for (const [user, joinedAtMs] of state.joined) out.push({ room, user, joinedAtMs });
      }
      return out;
    },
    async watch(room, feed) {
      return feeds.watch(room, feed);
    },
    async ping() {},
    async close() {},
  };
}
