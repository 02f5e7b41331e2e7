// localStorage can be missing (tests) or throw (privacy modes); the page works without it.

/** The stored string for `key`, or undefined. */
export function storedValue(key: string): string | undefined {
  try {
    return globalThis.localStorage?.getItem(key) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Stores `value` under `key` when storage is available. */
export function storeValue(key: string, value: string): void {
  try {
    globalThis.localStorage?.setItem(key, value);
  } catch {
    // Not persisted; the choice still holds for this page.
  }
}
