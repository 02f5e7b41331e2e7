/**
 * Input rules for everything a client stores. They throw {@link ValidationError}
 * (domain/errors.ts), which the edge answers with Connect's InvalidArgument naming the field.
 */

import { ValidationError } from "./errors.js";

/** Limits on what a client may store, from the configuration. */
export interface MessageLimits {
  /** Largest content, bytes of UTF-8 (default 4096). */
  maxContentBytes: number;
  /** Largest user name, bytes of UTF-8 (default 128). */
  maxUserBytes: number;
}

/** Room names: 1 to 64 of A-Z a-z 0-9 . _ - */
export const ROOM_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const MAX_CLIENT_MESSAGE_ID_BYTES = 128;

// A lone surrogate cannot be encoded as UTF-8; protobuf's JSON and binary decoders reject
// invalid UTF-8 bytes before we get here, but a string built in memory can still carry one.
function utf8Length(field: string, value: string): number {
  if (!value.isWellFormed()) throw new ValidationError(field, `${field} is not valid UTF-8`);
  return Buffer.byteLength(value, "utf8");
}

/** @throws ValidationError when `room` does not match {@link ROOM_PATTERN}. */
export function validateRoom(room: string, field = "room"): void {
  if (room === "") throw new ValidationError(field, `${field} is required`);
  if (!ROOM_PATTERN.test(room)) {
    throw new ValidationError(field, `${field} must match [A-Za-z0-9._-]{1,64}`);
  }
}

/** @throws ValidationError when `user` is empty, too long, or has control characters. */
export function validateUser(user: string, limits: MessageLimits, field = "user"): void {
  if (user.trim() === "") throw new ValidationError(field, `${field} is required`);
  const bytes = utf8Length(field, user);
  if (bytes > limits.maxUserBytes) {
    throw new ValidationError(
      field,
      `${field} is ${bytes} bytes; the limit is ${limits.maxUserBytes}`,
    );
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(user)) {
    throw new ValidationError(field, `${field} must not contain control characters`);
  }
}

/** @throws ValidationError when `content` is empty or over the byte limit. */
export function validateContent(content: string, limits: MessageLimits, field = "content"): void {
  if (content === "") throw new ValidationError(field, `${field} is required`);
  const bytes = utf8Length(field, content);
  if (bytes > limits.maxContentBytes) {
    throw new ValidationError(
      field,
      `${field} is ${bytes} bytes; the limit is ${limits.maxContentBytes}`,
    );
  }
}

/** @throws ValidationError when the idempotency key is longer than 128 bytes. */
export function validateClientMessageId(id: string, field = "client_message_id"): void {
  if (utf8Length(field, id) > MAX_CLIENT_MESSAGE_ID_BYTES) {
    throw new ValidationError(
      field,
      `${field} is longer than ${MAX_CLIENT_MESSAGE_ID_BYTES} bytes`,
    );
  }
}

/** Validates one message a client asks to store. @throws ValidationError naming the first bad field. */
export function validateDraft(
  input: { room: string; user: string; content: string; clientMessageId: string },
  limits: MessageLimits,
): void {
  validateRoom(input.room);
  validateUser(input.user, limits);
  validateContent(input.content, limits);
  validateClientMessageId(input.clientMessageId);
}
