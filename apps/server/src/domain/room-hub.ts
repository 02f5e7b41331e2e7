import type { Message } from "@switchboard/proto/gen/chat/chat_pb";
import type { LiveMessage, MessageStore, StoredMessage } from "../store/message-store.js";
import { FeedInterruptedError } from "./errors.js";
import { EPOCH, type Subscriber, type TaggedMessage } from "./subscriber.js";

interface RoomState {
  subscribers: Set<Subscriber>;
  /** Resolves to the function that stops the room's feed, once the feed is active. */
  feed: Promise<() => void>;
}

/**
 * Fan-out within one process: the live subscribers of each room, fed by the store's change feed
 * for that room (MessageStore.watch), which is open while the room has a local subscriber.
 *
 * A stored message is converted to a Message once, tagged with its log's epoch ({@link EPOCH},
 * for each subscription's cursor to check), and that one object is pushed to every subscriber of
 * the room: one map lookup plus one queue push per subscriber, nothing per other room. A
 * subscriber whose queue overflows is removed at once.
 */
export class RoomHub {
  private readonly rooms = new Map<string, RoomState>();
  /** Messages pushed to subscriber queues, since start. */
  deliveries = 0;
  /** Subscribers ended because their queue overflowed, since start. */
  slowConsumerDisconnects = 0;

  constructor(
    private readonly store: MessageStore,
    /** Converts a stored message for delivery, once per message. */
    private readonly toMessage: (m: StoredMessage) => Message,
    /** The origin of a message sent from this process, if any: it is not delivered there. */
    private readonly originOf: (id: string) => object | undefined,
    /** Called with a subscriber removed for overflowing its queue (to release its presence). */
    private readonly onEvicted: (subscriber: Subscriber) => void = () => {},
  ) {}

  /**
   * Adds a subscriber; resolves once the room's feed is active, so that every message stored
   * after this resolves reaches the subscriber's queue.
   *
   * @throws StoreUnavailableError when the feed cannot be opened (the subscriber is not added).
   */
  async add(subscriber: Subscriber): Promise<void> {
    let state = this.rooms.get(subscriber.room);
    if (state === undefined) {
      const room = subscriber.room;
      const created: RoomState = {
        subscribers: new Set(),
        feed: this.store.watch(room, {
          message: (m) => this.deliver(created, m),
          lost: (err) => this.lose(room, created, err),
        }),
      };
      state = created;
      this.rooms.set(room, state);
      // A failed feed leaves no room behind: the next subscriber tries again.
      created.feed.catch(() => {
        if (this.rooms.get(room) === created) this.rooms.delete(room);
      });
    }
    state.subscribers.add(subscriber);
    try {
      await state.feed;
    } catch (err) {
      state.subscribers.delete(subscriber);
      throw err;
    }
  }

  /** Removes a subscriber; the room's feed closes with its last subscriber. */
  remove(subscriber: Subscriber): void {
    const state = this.rooms.get(subscriber.room);
    if (state === undefined || !state.subscribers.delete(subscriber)) return;
    if (state.subscribers.size === 0) this.close(subscriber.room, state);
  }

  /** Live subscribers of this process, every room. */
  get subscribers(): number {
    let n = 0;
    for (const state of this.rooms.values()) n += state.subscribers.size;
    return n;
  }

  /** Local subscriber count per room, for rooms that have any. */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [room, state] of this.rooms) counts.set(room, state.subscribers.size);
    return counts;
  }

  private deliver(state: RoomState, stored: LiveMessage): void {
    if (state.subscribers.size === 0) return;
    // One Message object for every subscriber: the writers' serialize-once cache is keyed by it
    // (edge/rpc/subscribe-handler.ts, envelopeOf). Hand it on as it is; never copy or mutate it.
    const message: TaggedMessage = this.toMessage(stored);
    // "" from a node that predates epochs (a rolling upgrade): left untagged, not checked.
    if (stored.epoch !== "") message[EPOCH] = stored.epoch;
    const origin = this.originOf(stored.id);
    for (const subscriber of state.subscribers) {
      if (origin !== undefined && subscriber.origin === origin) continue;
      if (subscriber.push(message)) {
        this.deliveries++;
      } else {
        this.slowConsumerDisconnects++;
        state.subscribers.delete(subscriber);
        this.onEvicted(subscriber);
      }
    }
    if (state.subscribers.size === 0) this.close(stored.room, state);
  }

  private lose(room: string, state: RoomState, err: Error): void {
    if (this.rooms.get(room) === state) this.rooms.delete(room);
    for (const subscriber of state.subscribers)
      subscriber.end(new FeedInterruptedError(err.message));
    state.subscribers.clear();
  }

  private close(room: string, state: RoomState): void {
    if (this.rooms.get(room) === state) this.rooms.delete(room);
    state.feed.then(
      (stop) => stop(),
      () => {},
    );
  }
}
