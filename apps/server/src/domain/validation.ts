/**
 * The request limits that are settings, not schema rules: the largest user name and content a
 * client may store (MAX_USER_BYTES, MAX_CONTENT_BYTES). Every other request rule (the room
 * pattern, required fields, the schema's ceilings on these lengths, ranges of limits and offsets)
 * is a protovalidate rule in proto/chat/*.proto, enforced at the edge
 * (edge/rpc/validation-interceptor.ts). These two cannot be: a rule is fixed in the schema, and a
 * setting is chosen at start-up; the schema holds their hard ceiling (`string.max_bytes`) and the
 * setting may only tighten it (settings.ts refuses a value above the ceiling). They throw
 * {@link ValidationError} (domain/errors.ts), which the edge answers with InvalidArgument naming
 * the field.
 */

import { SETTINGS } from "../settings.js";
import { ValidationError } from "./errors.js";

/** Limits on what a client may store, from the configuration. */
export interface MessageLimits {
  /** Largest content, bytes of UTF-8 (default 4096; at most the schema's ceiling). */
  maxContentBytes: number;
  /** Largest user name, bytes of UTF-8 (default 128; at most the schema's ceiling). */
  maxUserBytes: number;
}

// A lone surrogate cannot be encoded as UTF-8; protobuf's JSON and binary decoders reject
// invalid UTF-8 bytes before we get here, but a string built in memory can still carry one.
function utf8Length(field: string, value: string): number {
  if (!value.isWellFormed()) throw new ValidationError(field, `${field} is not valid UTF-8`);
  return Buffer.byteLength(value, "utf8");
}

/** The setting behind each field's limit, as an operator sets it. */
const SETTING_OF = {
  user: SETTINGS.maxUserBytes.env,
  content: SETTINGS.maxContentBytes.env,
} as const;

function checkBytes(field: "user" | "content", value: string, limit: number): void {
  const bytes = utf8Length(field, value);
  if (bytes > limit) {
    throw new ValidationError(
      field,
      `${field} is ${bytes} bytes, over ${SETTING_OF[field]} (${limit})`,
    );
  }
}

/** @throws ValidationError when `user` is longer than MAX_USER_BYTES. */
export function checkUserLimit(user: string, limits: MessageLimits): void {
  checkBytes("user", user, limits.maxUserBytes);
}

/**
 * Checks one message a client asks to store against the settings' limits.
 * @throws ValidationError naming the first field over its limit (user, then content).
 */
export function checkDraftLimits(
  input: { user: string; content: string },
  limits: MessageLimits,
): void {
  checkBytes("user", input.user, limits.maxUserBytes);
  checkBytes("content", input.content, limits.maxContentBytes);
}
