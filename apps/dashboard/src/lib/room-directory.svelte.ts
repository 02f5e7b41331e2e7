import { create } from "@bufbuild/protobuf";
import { type Client, ConnectError } from "@connectrpc/connect";
import {
  type ChatService,
  MessageType,
  type RoomInfo,
  type RoomsEvent,
  RoomsEventSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { followStream, STREAM_BACKOFF, type StreamState } from "./follow-stream.ts";
import { storedValue, storeValue } from "./storage.ts";

const SEEN_KEY = "switchboard.seen";
/** The epoch of each room's log its seen offset is in (a reset log starts unread again). */
const SEEN_EPOCHS_KEY = "switchboard.seen-epochs";
/** How often a hidden tab reads the room list (ListRooms) instead of holding a stream, ms. */
export const HIDDEN_POLL_MS = 30_000;
/** GetHistory page used to count unread messages (the server's largest). */
const COUNT_PAGE = 500;

/** A room in the list. */
export interface RoomSummary {
  name: string;
  messageCount: bigint;
  lastOffset: bigint;
  /** Users with an open subscription now: what "members" counts everywhere on the page. */
  members: number;
  /** Open subscriptions now (a user with two tabs counts twice): shown on hover. */
  connections: number;
  /** CHAT messages stored since the viewer last had the room in view. */
  unread: number;
  /** `unread` is a lower bound (more than one count page arrived between reads). */
  unreadMore: boolean;
}

/**
 * The room list, pushed by the server (WatchRooms: a snapshot, then the rooms whose counts
 * changed; reopened with backoff after a drop, each time with a new snapshot), and unread counts
 * for rooms not in view. A room's "seen" offset is the newest offset shown while it was in view
 * (kept in localStorage); unread counts CHAT messages after it, read with GetHistory only when
 * the room's last offset moved, so JOIN and LEAVE never count as unread. The seen offset is kept
 * with the epoch of the room's log: when the room's history was reset (another epoch), what was
 * seen is gone and the new log counts as unread from its start.
 */
export class RoomDirectory {
  #rooms = $state.raw<RoomSummary[]>([]);
  #loaded = $state(false);
  #state = $state<StreamState>("connecting");
  #error = $state.raw<ConnectError | undefined>(undefined);
  #current: string | undefined;
  readonly #seen: Map<string, bigint>;
  /** The epoch each seen offset is in, where known. */
  readonly #seenEpochs: Map<string, string>;
  /** Per room: the offset up to which unread messages were counted, and the count. */
  readonly #counted = new Map<string, { upTo: bigint; unread: number; more: boolean }>();
  /** The rooms as the server last described them, by name. */
  readonly #infos = new Map<string, RoomInfo>();
  #abort: AbortController | undefined;
  /** Events are applied one at a time, in order (unread counts read history in between). */
  #applying: Promise<void> = Promise.resolve();

  constructor() {
    this.#seen = loadSeen();
    this.#seenEpochs = loadSeenEpochs();
  }

  /** By name. */
  get rooms(): readonly RoomSummary[] {
    return this.#rooms;
  }

  /** Unread messages in every room not in view (for the page title). */
  get totalUnread(): number {
    return this.#rooms.reduce((sum, r) => sum + r.unread, 0);
  }

  /** The first snapshot has arrived. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** The WatchRooms stream: `live` while changes arrive as they happen. */
  get state(): StreamState {
    return this.#state;
  }

  /**
   * Why the room list is not live: the error that ended its last attempt (WatchRooms, or
   * ListRooms while the tab is hidden), until one succeeds; undefined while none failed. The
   * page shows it instead of "Loading rooms…" (e.g. `unauthenticated: missing bearer token`).
   */
  get error(): ConnectError | undefined {
    return this.#error;
  }

  /**
   * Follows WatchRooms with `client` until stopped, while the page is visible. A hidden tab
   * closes the stream and reads ListRooms every {@link HIDDEN_POLL_MS} instead (its title still
   * counts unread messages): over plain HTTP/1.1 a browser opens at most six connections per
   * origin, shared by every tab, and each open stream holds one.
   */
  start(client: Client<typeof ChatService>): void {
    this.stop();
    const abort = new AbortController();
    this.#abort = abort;
    void this.#follow(client, abort.signal);
  }

  async #follow(client: Client<typeof ChatService>, signal: AbortSignal): Promise<void> {
    const apply = (event: RoomsEvent) => {
      this.#applying = this.#applying.then(() => this.#apply(client, event, signal));
    };
    while (!signal.aborted) {
      if (pageHidden()) {
        try {
          const { rooms } = await client.listRooms({}, { signal });
          this.#error = undefined;
          apply(create(RoomsEventSchema, { snapshot: true, rooms }));
        } catch (err) {
          // Shown with the list; the next read tries again.
          if (!signal.aborted) this.#error = ConnectError.from(err);
        }
        await untilVisible(HIDDEN_POLL_MS, signal);
        continue;
      }
      // Visible: the stream, until the page is hidden (or the directory stopped).
      const visible = new AbortController();
      const stopVisible = () => visible.abort();
      signal.addEventListener("abort", stopVisible, { once: true });
      const onVisibility = () => {
        if (pageHidden()) visible.abort();
      };
      globalThis.document?.addEventListener("visibilitychange", onVisibility);
      try {
        await followStream((s) => client.watchRooms({}, { signal: s }), apply, {
          signal: visible.signal,
          backoff: STREAM_BACKOFF,
          onStateChange: (state, error) => {
            if (signal.aborted || state === "closed") return;
            this.#state = state;
            if (state === "live") this.#error = undefined;
            else if (error !== undefined) this.#error = error;
          },
        });
      } finally {
        signal.removeEventListener("abort", stopVisible);
        globalThis.document?.removeEventListener("visibilitychange", onVisibility);
      }
      // Refused for this token (permission_denied): not asked again until new clients (a new
      // token) restart the directory.
      if (this.#state === "denied") await aborted(signal);
    }
  }

  stop(): void {
    this.#abort?.abort();
    this.#abort = undefined;
  }

  /** Resolves once every event received so far is shown. */
  settled(): Promise<void> {
    return this.#applying;
  }

  /** The room now in view (undefined for none); its messages are never unread. */
  setCurrent(room: string | undefined): void {
    this.#current = room;
    if (room !== undefined) this.#clearUnread(room);
  }

  /**
   * Records that the viewer has seen `room` up to `offset`, in the room log's `epoch` ("" when
   * unknown: taken to be the one recorded).
   */
  markSeen(room: string, offset: bigint, epoch = ""): void {
    const sameLog = epoch === "" || (this.#seenEpochs.get(room) ?? epoch) === epoch;
    if (sameLog && (this.#seen.get(room) ?? -1n) >= offset) return;
    this.#seen.set(room, offset);
    if (epoch !== "") this.#seenEpochs.set(room, epoch);
    this.#counted.set(room, { upTo: offset, unread: 0, more: false });
    saveSeen(this.#seen, this.#seenEpochs);
    this.#clearUnread(room);
  }

  async #apply(
    client: Client<typeof ChatService>,
    event: RoomsEvent,
    signal: AbortSignal,
  ): Promise<void> {
    if (signal.aborted) return;
    const firstLoad = !this.#loaded;
    if (event.snapshot) this.#infos.clear();
    for (const name of event.removedRooms) this.#infos.delete(name);
    for (const info of event.rooms) this.#infos.set(info.name, info);
    const previous = new Map(this.#rooms.map((r) => [r.name, r]));
    const changed = new Set(event.rooms.map((r) => r.name));
    const summaries: RoomSummary[] = [];
    for (const info of this.#infos.values()) {
      const before = previous.get(info.name);
      if (before !== undefined && !changed.has(info.name)) {
        summaries.push(before);
        continue;
      }
      let seen = this.#seen.get(info.name);
      if (seen === undefined) {
        // Rooms present at the first load start read; rooms created later start unread.
        seen = firstLoad ? info.lastOffset : 0n;
        this.#seen.set(info.name, seen);
      }
      const seenEpoch = this.#seenEpochs.get(info.name);
      if (seenEpoch !== undefined && info.epoch !== "" && seenEpoch !== info.epoch) {
        // The room's history was reset: the offset seen was in a log that is gone.
        seen = 0n;
        this.#seen.set(info.name, seen);
        this.#counted.delete(info.name);
        saveSeen(this.#seen, this.#seenEpochs);
      }
      if (info.epoch !== "" && seenEpoch !== info.epoch) {
        this.#seenEpochs.set(info.name, info.epoch);
        saveSeen(this.#seen, this.#seenEpochs);
      }
      const counted = await this.#count(client, info.name, info.lastOffset, seen, signal);
      if (signal.aborted) return;
      const inView = info.name === this.#current;
      summaries.push({
        name: info.name,
        messageCount: info.messageCount,
        lastOffset: info.lastOffset,
        members: info.memberCount,
        connections: info.subscriberCount,
        unread: inView ? 0 : counted.unread,
        unreadMore: inView ? false : counted.more,
      });
    }
    summaries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (firstLoad) saveSeen(this.#seen, this.#seenEpochs);
    this.#rooms = summaries;
    this.#loaded = true;
  }

  async #count(
    client: Client<typeof ChatService>,
    room: string,
    lastOffset: bigint,
    seen: bigint,
    signal: AbortSignal,
  ) {
    let counted = this.#counted.get(room);
    if (counted === undefined || counted.upTo < seen) {
      counted = { upTo: seen, unread: 0, more: false };
      this.#counted.set(room, counted);
    }
    if (room === this.#current || lastOffset <= counted.upTo) return counted;
    try {
      const page = await client.getHistory(
        { room, afterOffset: counted.upTo, limit: COUNT_PAGE },
        { signal },
      );
      counted.unread += page.messages.filter((m) => m.type === MessageType.CHAT).length;
      const last = page.messages.at(-1)?.offset;
      counted.upTo = page.hasMore && last !== undefined ? last : lastOffset;
      counted.more = page.hasMore;
    } catch {
      // Counted again at the room's next change.
    }
    return counted;
  }

  #clearUnread(room: string): void {
    const counted = this.#counted.get(room);
    if (counted !== undefined) {
      counted.unread = 0;
      counted.more = false;
    }
    if (this.#rooms.some((r) => r.name === room && r.unread > 0)) {
      this.#rooms = this.#rooms.map((r) =>
        r.name === room ? { ...r, unread: 0, unreadMore: false } : r,
      );
    }
  }
}

function loadSeen(): Map<string, bigint> {
  try {
    const raw = JSON.parse(storedValue(SEEN_KEY) ?? "{}") as Record<string, string>;
    return new Map(Object.entries(raw).map(([room, offset]) => [room, BigInt(offset)]));
  } catch {
    return new Map();
  }
}

function loadSeenEpochs(): Map<string, string> {
  try {
    const raw = JSON.parse(storedValue(SEEN_EPOCHS_KEY) ?? "{}") as Record<string, string>;
    return new Map(Object.entries(raw));
  } catch {
    return new Map();
  }
}

function saveSeen(seen: Map<string, bigint>, epochs: Map<string, string>): void {
  storeValue(
    SEEN_KEY,
    JSON.stringify(Object.fromEntries([...seen].map(([room, offset]) => [room, `${offset}`]))),
  );
  storeValue(SEEN_EPOCHS_KEY, JSON.stringify(Object.fromEntries(epochs)));
}

function pageHidden(): boolean {
  return globalThis.document?.visibilityState === "hidden";
}

/** Resolves after `ms`, when the page becomes visible, or when `signal` aborts. */
function untilVisible(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      globalThis.document?.removeEventListener("visibilitychange", onVisibility);
      resolve();
    };
    const onVisibility = () => {
      if (!pageHidden()) done();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    globalThis.document?.addEventListener("visibilitychange", onVisibility);
  });
}

/** Resolves when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}
