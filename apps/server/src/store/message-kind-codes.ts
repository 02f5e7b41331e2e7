import type { MessageKind } from "./message-store.js";

/**
 * The integer each {@link MessageKind} is written as: the `type` column of SQLite's `messages`
 * table and the `t` field of a Redis entry. Fixed: databases written by earlier versions hold
 * these numbers (they are chat.MessageType's, which the store no longer imports; a test checks
 * that they still agree).
 */
export const MESSAGE_KIND_CODES: Readonly<Record<MessageKind, number>> = {
  chat: 0,
  join: 1,
  leave: 2,
};

const KINDS = new Map(
  Object.entries(MESSAGE_KIND_CODES).map(([kind, code]) => [code, kind as MessageKind]),
);

/**
 * The kind a stored code stands for.
 * @throws Error for a code no kind is written as (a damaged row or entry).
 */
export function kindOfCode(code: number): MessageKind {
  const kind = KINDS.get(code);
  if (kind === undefined) throw new Error(`stored message has an unknown type code ${code}`);
  return kind;
}
