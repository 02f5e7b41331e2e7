import type { Client } from "@connectrpc/connect";
import { type ChatService, MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { storedValue, storeValue } from "./storage.ts";

/** How often the room list is read again, ms. ListRooms is cheap and unary. */
export const ROOMS_POLL_MS = 3000;
/** Room names, as the server checks them (apps/server/src/domain/validation.ts). */
export const ROOM_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const SEEN_KEY = "switchboard.seen";
/** GetHistory page used to count unread messages (the server's largest). */
const COUNT_PAGE = 500;

/** A room in the list. */
export interface RoomSummary {
  name: string;
  messageCount: bigint;
  lastOffset: bigint;
  /** Open subscriptions now. */
  subscribers: number;
  /** CHAT messages stored since the viewer last had the room in view. */
  unread: number;
  /** `unread` is a lower bound (more than one count page arrived between reads). */
  unreadMore: boolean;
}

/**
 * The room list (ListRooms, read every {@link ROOMS_POLL_MS}) and unread counts for rooms not in
 * view. A room's "seen" offset is the newest offset shown while it was in view (kept in
 * localStorage); unread counts CHAT messages after it, read with GetHistory only when the room's
 * last offset moved, so JOIN and LEAVE never count as unread.
 */
export class RoomDirectory {
  #rooms = $state.raw<RoomSummary[]>([]);
  #loaded = $state(false);
  #current: string | undefined;
  #client: Client<typeof ChatService> | undefined;
  readonly #seen: Map<string, bigint>;
  /** Per room: the offset up to which unread messages were counted, and the count. */
  readonly #counted = new Map<string, { upTo: bigint; unread: number; more: boolean }>();
  #abort: AbortController | undefined;
  #reading = false;

  constructor() {
    this.#seen = loadSeen();
  }

  /** By name. */
  get rooms(): readonly RoomSummary[] {
    return this.#rooms;
  }

  /** Unread messages in every room not in view (for the page title). */
  get totalUnread(): number {
    return this.#rooms.reduce((sum, r) => sum + r.unread, 0);
  }

  /** The first ListRooms has answered. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** Reads the list with `client` now and every {@link ROOMS_POLL_MS} until stopped. */
  start(client: Client<typeof ChatService>): void {
    this.stop();
    this.#client = client;
    const abort = new AbortController();
    this.#abort = abort;
    const loop = async () => {
      while (!abort.signal.aborted) {
        await this.refresh(abort.signal);
        await new Promise((resolve) => setTimeout(resolve, ROOMS_POLL_MS));
      }
    };
    void loop();
  }

  stop(): void {
    this.#abort?.abort();
    this.#abort = undefined;
  }

  /** The room now in view (undefined for none); its messages are never unread. */
  setCurrent(room: string | undefined): void {
    this.#current = room;
    if (room !== undefined) this.#clearUnread(room);
    // Counts as of now when the list comes into view, not as of the last read.
    if (this.#loaded) void this.refresh();
  }

  /** Records that the viewer has seen `room` up to `offset`. */
  markSeen(room: string, offset: bigint): void {
    // A room just created by joining it: list it now rather than at the next read.
    if (this.#loaded && offset > 0n && !this.#rooms.some((r) => r.name === room)) {
      void this.refresh();
    }
    if ((this.#seen.get(room) ?? -1n) >= offset) return;
    this.#seen.set(room, offset);
    this.#counted.set(room, { upTo: offset, unread: 0, more: false });
    saveSeen(this.#seen);
    this.#clearUnread(room);
  }

  /** Reads the list once and updates unread counts. Failures are left to the connection's list. */
  async refresh(signal?: AbortSignal): Promise<void> {
    const client = this.#client;
    if (client === undefined || this.#reading) return;
    this.#reading = true;
    try {
      await this.#read(client, signal);
    } finally {
      this.#reading = false;
    }
  }

  async #read(client: Client<typeof ChatService>, signal: AbortSignal | undefined): Promise<void> {
    let infos: Awaited<ReturnType<Client<typeof ChatService>["listRooms"]>>["rooms"];
    try {
      infos = (await client.listRooms({}, signal === undefined ? {} : { signal })).rooms;
    } catch {
      return;
    }
    const firstLoad = !this.#loaded;
    const summaries: RoomSummary[] = [];
    for (const info of infos) {
      let seen = this.#seen.get(info.name);
      if (seen === undefined) {
        // Rooms present at the first load start read; rooms created later start unread.
        seen = firstLoad ? info.lastOffset : 0n;
        this.#seen.set(info.name, seen);
      }
      const counted = await this.#count(client, info.name, info.lastOffset, seen, signal);
      summaries.push({
        name: info.name,
        messageCount: info.messageCount,
        lastOffset: info.lastOffset,
        subscribers: info.subscriberCount,
        unread: info.name === this.#current ? 0 : counted.unread,
        unreadMore: info.name === this.#current ? false : counted.more,
      });
    }
    summaries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (firstLoad) saveSeen(this.#seen);
    this.#rooms = summaries;
    this.#loaded = true;
  }

  async #count(
    client: Client<typeof ChatService>,
    room: string,
    lastOffset: bigint,
    seen: bigint,
    signal: AbortSignal | undefined,
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
        signal === undefined ? {} : { signal },
      );
      counted.unread += page.messages.filter((m) => m.type === MessageType.CHAT).length;
      const last = page.messages.at(-1)?.offset;
      counted.upTo = page.hasMore && last !== undefined ? last : lastOffset;
      counted.more = page.hasMore;
    } catch {
      // Counted again at the next read.
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

function saveSeen(seen: Map<string, bigint>): void {
  storeValue(
    SEEN_KEY,
    JSON.stringify(Object.fromEntries([...seen].map(([room, offset]) => [room, `${offset}`]))),
  );
}
