import type { Message } from "@switchboard/proto/gen/chat/chat_pb";
import { BoundedQueue } from "./bounded-queue.js";

/**
 * The epoch of the log a live message was stored in, as the hub tags the one Message object it
 * builds per publish. A symbol property: protobuf serializes only the schema's fields, so the
 * tag costs no byte on the wire (the contract gives a stream's epoch once, in its welcome).
 */
export const EPOCH: unique symbol = Symbol("switchboard.epoch");

/** A live message with its log's epoch (see {@link EPOCH}); untagged: not checked. */
export type TaggedMessage = Message & { [EPOCH]?: string };

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
