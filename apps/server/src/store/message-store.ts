/**
 * The durable message log behind every room. Three implementations: the embedded SQLite store
 * (sqlite/), a memory store for tests and throwaway runs (memory/), and, for several nodes, a
 * Redis store (redis/). The store knows nothing of RPCs or
 * fan-out; the domain (rooms.ts) calls it and fans out what it returns.
 *
 * Offsets are per room, assigned by the store atomically: 1, 2, 3, … with no gap, even when
 * several appends to one room race. Offsets are JavaScript numbers (safe integers, < 2^53).
 *
 * Each room's log has an epoch (store/epoch.ts), created with its first stored message and kept
 * as long as its offsets: SQLite keeps it in the database, Redis in a key of the room's slot
 * (lost with the data: FLUSHALL, a restart without AOF), the memory store for the process's
 * life. Every answer that carries offsets names the epoch they are in.
 */
export interface MessageStore {
  /**
   * Appends messages to their rooms, in order, and resolves once they are durable (an
   * acknowledged message survives `kill -9`). An entry whose `clientMessageId` was already used
   * in its room is not stored again: its result is the original message with `duplicate: true`,
   * whatever the entry holds (the domain, Rooms.send, compares the two and refuses a different
   * message: the store decides atomically which message owns a key, and that message never
   * changes).
   *
   * JOIN and LEAVE are presence events, and each room records who has joined (a stored JOIN with
   * no later LEAVE; see {@link MessageStore.joined}), in the same write: a JOIN for a user the
   * room already records as joined, or a LEAVE for one it does not, is not stored; its result is
   * the draft with offset 0 and `duplicate: true`. So a resume never stores a second JOIN, and
   * a LEAVE is stored once however many nodes or processes try. A store shared by several nodes
   * (Redis) also refuses a LEAVE while the user has a subscription on a live node, or was last
   * seen less than the presence grace ago.
   *
   * `signal` is the caller's deadline or cancellation: an append whose signal is aborted before
   * it is written is not written, and rejects with the signal's reason. (Once written, it stays:
   * a retry with the same client_message_id finds it.)
   *
   * Each result names the epoch of the log the message is in.
   *
   * @throws StoreUnavailableError when the store cannot be reached; the signal's reason.
   */
  append(drafts: readonly MessageDraft[], signal?: AbortSignal): Promise<AppendResult[]>;
  /**
   * A page of one room's history, oldest first. See {@link HistoryQuery}.
   * @throws the signal's reason once it is aborted; StoreUnavailableError.
   */
  read(query: HistoryQuery, signal?: AbortSignal): Promise<HistoryPage>;
  /** Every room that has at least one message, by name. */
  rooms(): Promise<RoomStats[]>;
  /**
   * Who the stored history says is in a room: users with a stored JOIN and no later LEAVE, of
   * `room`, or of every room when omitted. Durable with the history: after a restart (or a
   * `kill -9`) it names the members whose LEAVE is still owed.
   */
  joined(room?: string): Promise<JoinedMember[]>;
  /**
   * The change feed of one room: calls `feed.message` with every message appended to `room`
   * from now on, by this process or any other sharing the store, in offset order within each
   * epoch (a reset log starts again at its first offset, with its new epoch), each once.
   * Resolves once the feed is active: every message stored after that is delivered. (A Redis
   * store with a replica wait delivers a message once its append, or a later one's, is
   * acknowledged: never one that a failover could still take back; redis/feeds.ts.) If the feed
   * breaks (the store became unreachable), `feed.lost` is called once and nothing more is
   * delivered.
   *
   * @returns a function that stops the feed.
   * @throws StoreUnavailableError when the store cannot be reached.
   */
  watch(room: string, feed: RoomFeed): Promise<() => void>;
  /** Resolves when the store answers (readiness). */
  ping(): Promise<void>;
  /**
   * How often this process's writes found the store's write lock held by another process (a
   * store whose writers take turns: SQLite shared by the workers of WORKERS=N), since start.
   * Absent for stores without one.
   */
  contention?(): WriteContention;
  /** Flushes pending appends and releases the store. */
  close(): Promise<void>;
}

/** A message to store; the store assigns `offset`. */
export interface MessageDraft {
  /** Globally unique id, assigned by the caller before the append. */
  id: string;
  room: string;
  user: string;
  content: string;
  /** A chat line, or a member joining or leaving the room (presence events). */
  kind: MessageKind;
  /** Server time of acceptance, ms since the Unix epoch. */
  timestampMs: number;
  /** Idempotency key, unique per room; "" for none. */
  clientMessageId: string;
  /**
   * The W3C `traceparent` of the span that appended it (telemetry/traced-store.ts), absent when
   * tracing is off or the append was not sampled. Opaque to the store, never stored in the log:
   * carried with the append's announcement to the feeds of every process and node (the Redis
   * feed's payload, the WORKERS=N wake-up), so that their delivery spans link to the append.
   * A message read back from the log (history, a feed catching up) need not have it.
   */
  trace?: string;
}

/**
 * What a stored message records. The store's own vocabulary: the domain maps it to the
 * contract's chat.MessageType (CHAT, JOIN, LEAVE; SYSTEM messages are never stored).
 */
export type MessageKind = "chat" | "join" | "leave";

/** A message as the store keeps it. */
export interface StoredMessage extends MessageDraft {
  /** Position in its room: 1, 2, 3, … */
  offset: number;
}

/** A message as a room's change feed announces it: with the epoch of the log it was stored in. */
export interface LiveMessage extends StoredMessage {
  epoch: string;
}

/** Receives a room's appended messages; see MessageStore.watch. */
export interface RoomFeed {
  message(message: LiveMessage): void;
  lost(error: Error): void;
}

/** A user the history records as joined to a room (see MessageStore.joined). */
export interface JoinedMember {
  room: string;
  user: string;
  /** When the stored JOIN was accepted, ms since the Unix epoch. */
  joinedAtMs: number;
}

export interface AppendResult {
  message: StoredMessage;
  /**
   * True when nothing was stored: `clientMessageId` matched an earlier message, which is
   * returned instead; or a JOIN/LEAVE was redundant (then `message` is the draft, offset 0).
   */
  duplicate: boolean;
  /**
   * The epoch of the room's log that holds `message` (for a redundant JOIN/LEAVE, the room's
   * current epoch; "" when the room has no log).
   */
  epoch: string;
}

/**
 * Which part of a room's history to read. With `afterOffset`, the page starts at the oldest
 * message after it; with only `beforeOffset`, the page is the newest messages before it; with
 * neither, the newest messages of the room. Both may be combined.
 */
export interface HistoryQuery {
  room: string;
  afterOffset?: number | undefined;
  beforeOffset?: number | undefined;
  /** Messages at most. */
  limit: number;
}

export interface HistoryPage {
  /** Oldest first. */
  messages: StoredMessage[];
  /** The room's newest offset when the page was read (0 for an empty room). */
  lastOffset: number;
  /** More messages match the query beyond this page. */
  hasMore: boolean;
  /** The epoch of the room's log when the page was read ("" for a room with no log). */
  epoch: string;
}

export interface RoomStats {
  name: string;
  messageCount: number;
  lastOffset: number;
  /** The epoch of the room's log. */
  epoch: string;
}

/** See {@link MessageStore.contention}. */
export interface WriteContention {
  /** Write transactions begun (the write lock taken), since start. */
  transactions: number;
  /** Of those, how many found the write lock held and waited for it. */
  waits: number;
  /** Time spent waiting for the write lock, in total, seconds. */
  waitSeconds: number;
}

/** The store cannot be reached now; the call may succeed later (Connect code Unavailable). */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
}

/**
 * The store could not make an append as durable as it is configured to (a Redis replica wait:
 * fewer replicas acknowledged it within the timeout, or the room's master was known to have too
 * few in sync and nothing was written). A StoreUnavailableError (Connect code Unavailable) for a
 * send, which the caller retries with its client_message_id; a JOIN or LEAVE, which is a side
 * effect of subscribing and no caller's send, goes on without it (domain/rooms.ts).
 */
export class NotDurableError extends StoreUnavailableError {
  override name = "NotDurableError";
  constructor(
    message: string,
    /**
     * Whether the message may be stored (written on the master, neither acknowledged nor
     * announced) or was not written at all.
     */
    readonly mayBeStored: boolean,
  ) {
    super(message);
  }
}
