import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createSqliteStore } from "./message-store.js";

// Durability rests on settings that no crash test can see: WAL survives `kill -9` whatever
// `synchronous` says, and only power loss tells FULL from OFF. So the settings themselves are
// asserted, on the store's own connection (`synchronous` and `busy_timeout` are per connection),
// with the values written out here rather than read from the code under test.

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-sqlite-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("the SQLite store's settings", () => {
  it("runs with journal_mode=wal, synchronous=FULL (2) and busy_timeout=5000, new or reopened", async () => {
    const dir = tempDir();
    for (const round of ["new", "reopened"]) {
      const store = createSqliteStore(dir);
      expect(store.pragma("journal_mode"), round).toBe("wal");
      expect(store.pragma("synchronous"), round).toBe(2);
      expect(store.pragma("busy_timeout"), round).toBe(5000);
      // Checkpoints stay on, so the WAL does not grow without bound.
      expect(store.pragma("wal_autocheckpoint"), round).toBeGreaterThan(0);
      await store.append([
        {
          id: `id-${round}`,
          room: "r",
          user: "u",
          content: round,
          kind: "chat",
          timestampMs: Date.now(),
          clientMessageId: "",
        },
      ]);
      await store.close();
    }
  });

  it("leaves the database file in WAL mode, as another connection sees it", async () => {
    const dir = tempDir();
    await createSqliteStore(dir).close();
    const other = new Database(join(dir, "switchboard.db"), { readonly: true });
    try {
      expect(other.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      other.close();
    }
  });

  it("refuses a pragma name that is not one", () => {
    const store = createSqliteStore(tempDir());
    expect(() => store.pragma("synchronous = OFF")).toThrow(/not a pragma name/);
    expect(store.pragma("synchronous")).toBe(2);
    void store.close();
  });
});
