/**
 * A random idempotency key (client_message_id). crypto.randomUUID exists only in secure contexts,
 * and an operator may open the dashboard over plain http:// on a LAN address, so this uses
 * getRandomValues, which every context has.
 */
export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A short, stable hash of a string (FNV-1a, 32 bits) in base 36, for deriving keys. */
export function shortHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(36);
}
