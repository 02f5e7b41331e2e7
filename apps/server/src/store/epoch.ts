import { randomBytes } from "node:crypto";

/**
 * A new room log's epoch: 9 random bytes as base64url, 12 characters (72 bits: two logs never
 * share one). Every store names a room's log with one, fixed when the log is created (its first
 * stored message) and kept exactly as long as its offsets are; a reset log (data lost, offsets
 * rolled back) gets a new one, so an (epoch, offset) pair names one message for good (the idea
 * of Centrifugo's `StreamPosition{offset, epoch}`). The characters need no escaping in JSON.
 */
export function newEpoch(): string {
  return randomBytes(9).toString("base64url");
}
