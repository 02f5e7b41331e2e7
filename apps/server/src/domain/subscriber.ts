import type { Message } from "@switchboard/proto/gen/chat/chat_pb";
import { BoundedQueue } from "./bounded-queue.js";

/**
 * One consumer of a room's live messages: a bounded queue that the hub pushes into and one
 * stream drains (see BoundedQueue for overflow). The same Message object is pushed to every
 * subscriber of a room: it is built once per publish.
 */
export class Subscriber extends BoundedQueue<Message> {
  /** When the subscription began, ms since the Unix epoch. */
  readonly joinedAtMs = Date.now();
  /** Set once Rooms.leave has released this subscription's presence (it runs once). */
  left = false;

  constructor(
    readonly room: string,
    readonly user: string,
    limit: number,
    /** Messages published with this origin are not delivered here (a Chat session's own sends). */
    readonly origin: object | undefined = undefined,
  ) {
    super(limit);
  }
}
