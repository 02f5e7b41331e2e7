// The domain every peer shares with Switchboard: the same Rooms, in-memory store and local
// presence, with Switchboard's default limits, so that only the protocol layer differs.
import { createMemoryPresence, createMemoryStore, DEFAULTS, Rooms } from "@switchboard/server";

/** Switchboard's default limits (apps/server/src/settings.ts). */
export const LIMITS = {
  maxContentBytes: DEFAULTS.maxContentBytes,
  maxUserBytes: DEFAULTS.maxUserBytes,
  subscriberQueueLimit: DEFAULTS.subscriberQueueLimit,
};

/** A fresh in-memory rooms domain, as STORE=memory builds it. */
export function createPeerRooms(): Rooms {
  return new Rooms(createMemoryStore(), createMemoryPresence(), LIMITS);
}

/** The port a peer listens on (PORT, default 8080). */
export function peerPort(): number {
  return Number(process.env.PORT ?? 8080);
}

/** The line a peer prints once it listens; the runner waits for it. */
export function ready(name: string, port: number): void {
  console.log(`${name} ready on 127.0.0.1:${port}`);
}
