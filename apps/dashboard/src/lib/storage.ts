// localStorage can be missing (tests) or throw (privacy modes); the page works without it.

type StorageKind = "localStorage" | "sessionStorage";

/** The string stored under `key` in `kind`, or undefined when absent or unavailable. */
function read(kind: StorageKind, key: string): string | undefined {
  try {
    return globalThis[kind]?.getItem(key) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Stores `value` under `key` in `kind` ("" removes it when `emptyRemoves`), when storage is available. */
function write(kind: StorageKind, key: string, value: string, emptyRemoves: boolean): void {
  try {
    if (emptyRemoves && value === "") globalThis[kind]?.removeItem(key);
    else globalThis[kind]?.setItem(key, value);
  } catch {
    // Not persisted; the value still holds for this page.
  }
}

/** The stored string for `key`, or undefined. */
export function storedValue(key: string): string | undefined {
  return read("localStorage", key);
}

/** Stores `value` under `key` when storage is available. */
export function storeValue(key: string, value: string): void {
  write("localStorage", key, value, false);
}

/** The string stored for this tab only (sessionStorage) under `key`, or undefined. */
export function storedSessionValue(key: string): string | undefined {
  return read("sessionStorage", key);
}

/** Stores `value` for this tab only; "" removes it. */
export function storeSessionValue(key: string, value: string): void {
  write("sessionStorage", key, value, true);
}
