import type { MessageStore } from "../store/message-store.js";
import type { Presence } from "../store/presence.js";
import type { Rooms } from "./rooms.js";

/** One room's counts, as ListRooms and WatchRooms give them. */
export interface RoomCounts {
  name: string;
  messageCount: number;
  lastOffset: number;
  /** The epoch of the room's log. */
  epoch: string;
  /** Users with at least one open subscription (ListMembers' length). */
  members: number;
  /** Open subscriptions (streams, Chat sessions), all nodes. */
  subscribers: number;
}

/** One change of the room list, for one watcher. */
export interface RoomsChange {
  /** True for a watcher's first change: `rooms` is the whole list. */
  snapshot: boolean;
  /** By name; only the changed rooms unless `snapshot`. */
  rooms: RoomCounts[];
  /** Rooms no longer listed. */
  removed: string[];
}

/** How the directory reads and how often. */
export interface RoomDirectoryOptions {
  /** Reads of the store while nothing local announced a change, ms (other nodes' changes). */
  pollMs: number;
  /** Least time between two reads, ms: a room changes at most once per this in the stream. */
  coalesceMs: number;
}

export const DEFAULT_ROOM_DIRECTORY_OPTIONS: RoomDirectoryOptions = {
  pollMs: 1000,
  coalesceMs: 250,
};

/**
 * Every room with its counts: the store's message counts and offsets, presence's subscriptions,
 * and the number of members per room: the users ListMembers lists, so also those whose last
 * subscription ended less than PRESENCE_GRACE_MS ago (one presence read per room).
 *
 * @throws StoreUnavailableError.
 */
export async function readRoomCounts(rooms: Rooms): Promise<RoomCounts[]> {
  const list = await rooms.list();
  return Promise.all(
    list.map(async (r) => ({
      name: r.name,
      messageCount: r.messageCount,
      lastOffset: r.lastOffset,
      epoch: r.epoch,
      subscribers: r.subscribers,
      members: (await rooms.members(r.name)).length,
    })),
  );
}

interface Watcher {
  /** Rooms changed since the watcher last took, by name (newest counts win: coalescing). */
  pending: Map<string, RoomCounts>;
  removed: Set<string>;
  snapshot: boolean;
  wake: (() => void) | undefined;
  failed: unknown;
}

/**
 * The room list as a change feed (WatchRooms). One reader per process, running only while a
 * watcher is open: it reads every room's counts ({@link readRoomCounts}), compares them with
 * the previous read, and hands each watcher only the rooms that differ. It reads again when this
 * process changed something ({@link RoomDirectory.nudge}: an append, a join, a leave) and
 * otherwise every `pollMs`, which is how changes made by other nodes sharing a Redis store
 * arrive: the store has no cross-node notification for "some room changed". Two reads are at
 * least `coalesceMs` apart, so a busy room is reported at most once per `coalesceMs`, with its
 * newest counts, however many messages it took meanwhile. A slow watcher does not queue events:
 * its pending changes merge by room, so its memory is bounded by the number of rooms.
 */
export class RoomDirectory {
  private readonly watchers = new Set<Watcher>();
  /** The last read, by name; undefined until the first read of the current run. */
  private state: Map<string, RoomCounts> | undefined;
  private running = false;
  private nudged = false;
  private wakeReader: (() => void) | undefined;
  private readonly options: RoomDirectoryOptions;

  constructor(
    private readonly read: () => Promise<RoomCounts[]>,
    options: Partial<RoomDirectoryOptions> = {},
  ) {
    this.options = { ...DEFAULT_ROOM_DIRECTORY_OPTIONS, ...options };
  }

  /** Open watchers (WatchRooms streams) on this process. */
  get watching(): number {
    return this.watchers.size;
  }

  /** Something in a room changed on this process: read again soon (after `coalesceMs`). */
  nudge(): void {
    if (!this.running) return;
    this.nudged = true;
    this.wakeReader?.();
  }

  /**
   * The changes of the room list until `signal` aborts: a snapshot first, then the rooms that
   * changed, at most one change per `coalesceMs` per room.
   *
   * @throws the signal's reason when it aborts; StoreUnavailableError when the store cannot be
   *   read (every open watcher ends with it; a client reconnects and gets a new snapshot).
   */
  async *watch(signal: AbortSignal): AsyncGenerator<RoomsChange> {
    const watcher: Watcher = {
      pending: new Map(),
      removed: new Set(),
      snapshot: true,
      wake: undefined,
      failed: undefined,
    };
    // While a reader runs, the last read is the snapshot; otherwise the next read fills it.
    if (this.state !== undefined) {
      for (const [name, room] of this.state) watcher.pending.set(name, room);
    }
    this.watchers.add(watcher);
    const onAbort = () => watcher.wake?.();
    signal.addEventListener("abort", onAbort);
    this.start();
    try {
      // The first read of a new run fills `pending`; until then the snapshot is not known.
      let first = true;
      for (;;) {
        if (signal.aborted) throw signal.reason;
        if (watcher.failed !== undefined) throw watcher.failed;
        const ready = first
          ? this.state !== undefined
          : watcher.pending.size > 0 || watcher.removed.size > 0;
        if (ready) {
          first = false;
          const change: RoomsChange = {
            snapshot: watcher.snapshot,
            rooms: [...watcher.pending.values()].sort(byName),
            removed: [...watcher.removed].sort(),
          };
          watcher.pending.clear();
          watcher.removed.clear();
          watcher.snapshot = false;
          yield change;
          continue;
        }
        await new Promise<void>((resolve) => {
          watcher.wake = resolve;
        });
        watcher.wake = undefined;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.watchers.delete(watcher);
      if (this.watchers.size === 0) this.wakeReader?.();
    }
  }

  private start(): void {
    if (this.running) return;
    this.running = true;
    void this.run();
  }

  private async run(): Promise<void> {
    try {
      while (this.watchers.size > 0) {
        const startedMs = performance.now();
        this.nudged = false;
        let list: RoomCounts[];
        try {
          list = await this.read();
        } catch (err) {
          // Every open watcher ends with the error (its client reconnects for a new snapshot).
          for (const watcher of this.watchers) {
            watcher.failed = err;
            watcher.wake?.();
          }
          this.watchers.clear();
          return;
        }
        this.publish(list);
        // Wait for a nudge (at least coalesceMs after this read began) or for pollMs.
        const earliest = startedMs + this.options.coalesceMs;
        const latest = startedMs + this.options.pollMs;
        await new Promise<void>((resolve) => {
          let timer: NodeJS.Timeout | undefined;
          const wake = () => {
            const now = performance.now();
            if (this.watchers.size === 0 || now >= latest) return finish();
            if (this.nudged) {
              clearTimeout(timer);
              timer = setTimeout(finish, Math.max(0, earliest - now));
            }
          };
          const finish = () => {
            clearTimeout(timer);
            this.wakeReader = undefined;
            resolve();
          };
          this.wakeReader = wake;
          timer = setTimeout(finish, Math.max(0, latest - performance.now()));
          if (this.nudged) wake();
        });
      }
    } finally {
      this.running = false;
      this.state = undefined;
    }
  }

  private publish(list: RoomCounts[]): void {
    const previous = this.state;
    const next = new Map(list.map((r) => [r.name, r]));
    this.state = next;
    for (const watcher of this.watchers) {
      if (watcher.snapshot && previous === undefined) {
        for (const [name, room] of next) watcher.pending.set(name, room);
      }
    }
    if (previous !== undefined) {
      const changed: RoomCounts[] = [];
      for (const [name, room] of next) {
        const before = previous.get(name);
        if (before === undefined || !sameCounts(before, room)) changed.push(room);
      }
      const removed = [...previous.keys()].filter((name) => !next.has(name));
      for (const watcher of this.watchers) {
        for (const room of changed) {
          watcher.pending.set(room.name, room);
          watcher.removed.delete(room.name);
        }
        for (const name of removed) {
          watcher.pending.delete(name);
          // A snapshot not handed out yet simply lacks the room.
          if (!watcher.snapshot) watcher.removed.add(name);
        }
      }
    }
    for (const watcher of this.watchers) watcher.wake?.();
  }
}

function sameCounts(a: RoomCounts, b: RoomCounts): boolean {
  return (
    a.messageCount === b.messageCount &&
    a.lastOffset === b.lastOffset &&
    a.epoch === b.epoch &&
    a.members === b.members &&
    a.subscribers === b.subscribers
  );
}

function byName(a: RoomCounts, b: RoomCounts): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The store, calling `onChange` after every append that completes: the directory's nudge for
 * changes made on this process. Every other member is the store's own.
 */
export function notifyingStore(store: MessageStore, onChange: () => void): MessageStore {
  return overriding(store, {
    append: async (drafts, signal) => {
      const results = await store.append(drafts, signal);
      onChange();
      return results;
    },
  });
}

/** Presence, calling `onChange` after every join and leave (connection counts change). */
export function notifyingPresence(presence: Presence, onChange: () => void): Presence {
  return overriding(presence, {
    join: async (room, user) => {
      const first = await presence.join(room, user);
      onChange();
      return first;
    },
    leave: async (room, user) => {
      const last = await presence.leave(room, user);
      onChange();
      return last;
    },
  });
}

/**
 * `target` with some methods replaced; every other member is read from `target` (methods bound
 * to it), so the wrapper keeps up with members added to the interface later.
 */
export function overriding<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(object, key) {
      if (Object.hasOwn(overrides, key)) return overrides[key as keyof T];
      const value: unknown = Reflect.get(object, key, object);
      return typeof value === "function" ? value.bind(object) : value;
    },
  });
}
