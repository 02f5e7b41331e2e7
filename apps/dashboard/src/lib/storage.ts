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

/** The string stored for this tab only (sessionStorage) under `key`, or undefined. */
export function storedSessionValue(key: string): string | undefined {
  try {
    return globalThis.sessionStorage?.getItem(key) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Stores `value` for this tab only; "" removes it. */
export function storeSessionValue(key: string, value: string): void {
  try {
    if (value === "") globalThis.sessionStorage?.removeItem(key);
    else globalThis.sessionStorage?.setItem(key, value);
  } catch {
    // Not kept; the value still holds for this page.
  }
}
