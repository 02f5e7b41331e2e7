import type { Message } from "@switchboard/proto/gen/chat/chat_pb";
import type { Subscriber } from "./subscriber.js";

/**
 * Fan-out within one process: the live subscribers of each room. Publishing a message costs one
 * map lookup plus one queue push per subscriber of that room, nothing per other room, and the
 * message object is shared by every subscriber (serialized per stream by the protocol layer).
 */
export class RoomHub {
  private readonly rooms = new Map<string, Set<Subscriber>>();
  // Open subscriptions per room and user, so presence checks do not scan a room.
  private readonly connectionCounts = new Map<string, Map<string, number>>();
  /** Messages pushed to subscriber queues, since start. */
  deliveries = 0;
  /** Subscribers ended because their queue overflowed, since start. */
  slowConsumerDisconnects = 0;

  add(subscriber: Subscriber): void {
    let subscribers = this.rooms.get(subscriber.room);
    if (subscribers === undefined) {
      subscribers = new Set();
      this.rooms.set(subscriber.room, subscribers);
    }
    if (subscribers.has(subscriber)) return;
    subscribers.add(subscriber);
    let users = this.connectionCounts.get(subscriber.room);
    if (users === undefined) {
      users = new Map();
      this.connectionCounts.set(subscriber.room, users);
    }
    users.set(subscriber.user, (users.get(subscriber.user) ?? 0) + 1);
  }

  remove(subscriber: Subscriber): void {
    const subscribers = this.rooms.get(subscriber.room);
    if (subscribers === undefined || !subscribers.delete(subscriber)) return;
    if (subscribers.size === 0) this.rooms.delete(subscriber.room);
    this.uncount(subscriber);
  }

  /** How many open subscriptions `user` has on `room`. */
  connections(room: string, user: string): number {
    return this.connectionCounts.get(room)?.get(user) ?? 0;
  }

  private uncount(subscriber: Subscriber): void {
    const users = this.connectionCounts.get(subscriber.room);
    if (users === undefined) return;
    const n = (users.get(subscriber.user) ?? 0) - 1;
    if (n > 0) users.set(subscriber.user, n);
    else users.delete(subscriber.user);
    if (users.size === 0) this.connectionCounts.delete(subscriber.room);
  }

  /** Delivers `message` to every subscriber of `room` except those whose origin is `origin`. */
  publish(room: string, message: Message, origin?: object): void {
    const subscribers = this.rooms.get(room);
    if (subscribers === undefined) return;
    for (const subscriber of subscribers) {
      if (origin !== undefined && subscriber.origin === origin) continue;
      if (subscriber.push(message)) {
        this.deliveries++;
      } else {
        this.slowConsumerDisconnects++;
        subscribers.delete(subscriber);
        this.uncount(subscriber);
      }
    }
    if (subscribers.size === 0) this.rooms.delete(room);
  }

  /** The live subscribers of `room`. */
  subscribers(room: string): ReadonlySet<Subscriber> {
    return this.rooms.get(room) ?? new Set();
  }

  /** Subscriber count per room, for rooms that have any. */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [room, subscribers] of this.rooms) counts.set(room, subscribers.size);
    return counts;
  }

  /** Every live subscriber, in every room. */
  *all(): Iterable<Subscriber> {
    for (const subscribers of this.rooms.values()) yield* subscribers;
  }
}
