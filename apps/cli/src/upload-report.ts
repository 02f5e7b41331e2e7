import { type Message, MessageType } from "@switchboard/proto/gen/chat/chat_pb";

/** One message the upload sent, in stream order. */
export interface SentMessage {
  /** Its line in the input (1-based). */
  line: number;
  room: string;
  /** The line's user, as the server stores it without authentication. */
  user: string;
  /** The token's `sub`, as a server that checks tokens stores it instead. */
  identity?: string | undefined;
  content: string;
  /** The idempotency key, "" when the line has none. */
  clientMessageId: string;
}

/** What an upload did, read back from the rooms' histories. */
export interface UploadReport {
  /** Messages the server got to, in stream order: every message on success. */
  processed: number;
  /** Of those, newly stored by this upload. */
  stored: number;
  /** Of those, already stored before (same room and clientMessageId): nothing new stored. */
  alreadyStored: number;
  /** The line to resume from (the first message not processed), undefined when all were. */
  resumeLine: number | undefined;
  /** The last offset this upload stored in each room. */
  lastStored: Map<string, bigint>;
}

/**
 * Works out what an UploadMessages call stored, from what it sent and what each room's
 * history holds after the offset it had before the upload (`after`, in offset order).
 *
 * UploadMessages answers only with a count (duplicates included) and one last offset, or with
 * an error that says nothing about what came before it; but each message the server accepts
 * is stored in stream order, and a message whose clientMessageId was already stored in its
 * room is not stored again. So, walking the sent messages in order and each room's new history
 * in order: a keyed message found by its key, or a keyless one found by its user and content, was
 * stored by this upload; a keyed message not found, before the last one found (or before
 * `processed` when the server said where it stopped), was already stored. Messages after that
 * are not known to have reached the server: the upload resumes there (a keyed one that did
 * arrive is not stored twice). `processed`: every message on success, N for the server's
 * "message N: …" refusal, undefined when the stream broke and only the histories can tell.
 */
export function reconcileUpload(
  sent: readonly SentMessage[],
  after: ReadonlyMap<string, readonly Message[]>,
  processed: number | undefined,
): UploadReport {
  const cursor = new Map<string, number>();
  const found: boolean[] = [];
  const lastStored = new Map<string, bigint>();
  let lastFound = -1;
  sent.forEach((s, i) => {
    const history = after.get(s.room) ?? [];
    const from = cursor.get(s.room) ?? 0;
    let at = -1;
    for (let j = from; j < history.length; j++) {
      const m = history[j] as Message;
      const match =
        s.clientMessageId !== ""
          ? m.clientMessageId === s.clientMessageId
          : m.clientMessageId === "" &&
            m.type === MessageType.CHAT &&
            (m.user === s.user || m.user === s.identity) &&
            m.content === s.content;
      if (match) {
        at = j;
        break;
      }
    }
    found[i] = at >= 0;
    if (at >= 0) {
      cursor.set(s.room, at + 1);
      lastFound = i;
      lastStored.set(s.room, (history[at] as Message).offset);
    }
  });
  const reached = Math.min(processed ?? lastFound + 1, sent.length);
  let stored = 0;
  let alreadyStored = 0;
  for (let i = 0; i < reached; i++) {
    if (found[i]) stored++;
    else if ((sent[i] as SentMessage).clientMessageId !== "") alreadyStored++;
  }
  return {
    processed: reached,
    stored,
    alreadyStored,
    resumeLine: reached < sent.length ? (sent[reached] as SentMessage).line : undefined,
    lastStored,
  };
}
