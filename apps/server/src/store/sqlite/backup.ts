import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import { newEpoch } from "../epoch.js";

/** The SQLite store's database file inside `DATA_DIR`. */
export const DATABASE_FILE = "switchboard.db";

/** A backup or restore that cannot be done; `message` says why and what to do. */
export class BackupError extends Error {
  override name = "BackupError";
}

/** One room of a backup: its log's epoch, last offset and stored message count. */
export interface BackedUpRoom {
  name: string;
  epoch: string;
  lastOffset: number;
  messageCount: number;
}

/** What a backup file holds: its size and every room's position. */
export interface BackupSummary {
  /** Absolute path of the backup file. */
  file: string;
  bytes: number;
  rooms: BackedUpRoom[];
  /** Messages stored, all rooms (JOIN and LEAVE entries included). */
  messages: number;
}

/** The rooms and messages a Switchboard database holds; throws if it is not one. */
function summarize(db: Database.Database, file: string): BackupSummary {
  const check = db.pragma("quick_check", { simple: true });
  if (check !== "ok") throw new BackupError(`${file} is damaged: quick_check says ${check}`);
  const tables = new Set(
    db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[],
  );
  if (!tables.has("messages") || !tables.has("rooms")) {
    throw new BackupError(`${file} is not a Switchboard database (no messages and rooms tables)`);
  }
  const rooms = (
    db.prepare("SELECT name, epoch, last_offset, message_count FROM rooms ORDER BY name").all() as {
      name: string;
      epoch: string;
      last_offset: number;
      message_count: number;
    }[]
  ).map((r) => ({
    name: r.name,
    epoch: r.epoch,
    lastOffset: r.last_offset,
    messageCount: r.message_count,
  }));
  const messages = db.prepare("SELECT count(*) FROM messages").pluck().get() as number;
  return { file, bytes: statSync(file).size, rooms, messages };
}

/**
 * Writes a consistent copy of `<dataDir>/switchboard.db` to `outFile` while servers keep writing
 * to it: SQLite's `VACUUM INTO` reads the database in one read transaction (a WAL snapshot:
 * every message committed before it began, none after) and writes a compact copy. Servers are
 * not paused; their writes go on beside the read. The copy is then checked (`quick_check`) and
 * summarized.
 *
 * @throws BackupError when there is no database in `dataDir` or `outFile` already exists (a
 *   backup never overwrites).
 */
export function backupDatabase(dataDir: string, outFile: string): BackupSummary {
  const source = join(dataDir, DATABASE_FILE);
  const target = resolve(outFile);
  if (!existsSync(source)) throw new BackupError(`no Switchboard database at ${source}`);
  if (existsSync(target)) throw new BackupError(`${target} exists; a backup never overwrites`);
  // Not read-only: a read-only connection cannot open a WAL database whose -shm file is gone
  // (a server that stopped after kill -9); this one only reads.
  const db = new Database(source, { fileMustExist: true, timeout: 10_000 });
  try {
    mkdirSync(dirname(target), { recursive: true });
    db.prepare("VACUUM INTO ?").run(target);
  } finally {
    db.close();
  }
  const copy = new Database(target, { readonly: true, fileMustExist: true });
  try {
    return summarize(copy, target);
  } finally {
    copy.close();
  }
}

/** What a restore did. */
export interface RestoreSummary extends BackupSummary {
  /** Where the database it replaced was moved, if there was one. */
  previous: string | undefined;
  /** True when every room's log was given a new epoch. */
  newEpochs: boolean;
}

/**
 * Replaces `<dataDir>/switchboard.db` with the backup `fromFile`, for a server that is not
 * running. The database it replaces (if any) is moved aside to
 * `switchboard.db.before-restore-<time>`, never deleted; the copy goes in under a temporary name
 * and is renamed into place, so a crash leaves either database whole.
 *
 * Each room keeps the epoch its log had in the backup, so clients that read no further than the
 * backup resume where they were. With `newEpochs`, every room's log gets a new epoch instead:
 * a client that read past the backup's point (messages the restore loses) is then told its
 * history was reset (`failed_precondition` with `chat.HistoryReset`), rather than resuming at
 * an offset that the restored log will give to a different message.
 *
 * @throws BackupError when `fromFile` is not a sound Switchboard database, or a process (a
 *   server or one of its workers) has the database open.
 */
export function restoreDatabase(
  fromFile: string,
  dataDir: string,
  options: { newEpochs?: boolean } = {},
): RestoreSummary {
  const from = resolve(fromFile);
  if (!existsSync(from)) throw new BackupError(`no backup at ${from}`);
  const check = new Database(from, { readonly: true, fileMustExist: true });
  try {
    summarize(check, from);
  } finally {
    check.close();
  }
  const target = join(resolve(dataDir), DATABASE_FILE);
  let previous: string | undefined;
  if (existsSync(target)) {
    assertUnused(target);
    previous = `${target}.before-restore-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    renameSync(target, previous);
    // An exclusive close checkpointed and removed the WAL; clear leftovers all the same, so no
    // stale WAL is replayed into the restored file.
    for (const suffix of ["-wal", "-shm"]) rmSync(target + suffix, { force: true });
  }
  const partial = `${target}.restoring`;
  copyFileSync(from, partial);
  const db = new Database(partial, { fileMustExist: true });
  let summary: BackupSummary;
  try {
    if (options.newEpochs === true) {
      const setEpoch = db.prepare("UPDATE rooms SET epoch = ? WHERE name = ?");
      db.transaction(() => {
        for (const name of db.prepare("SELECT name FROM rooms").pluck().all() as string[]) {
          setEpoch.run(newEpoch(), name);
        }
      })();
    }
    db.pragma("journal_mode = WAL");
    summary = summarize(db, partial);
  } finally {
    db.close();
  }
  renameSync(partial, target);
  return { ...summary, file: target, previous, newEpochs: options.newEpochs === true };
}

/**
 * Throws unless no other process has `file` open: an exclusive lock (SQLite's EXCLUSIVE locking
 * mode, no busy wait) cannot be taken while a server or worker holds the database, WAL mode
 * included.
 */
function assertUnused(file: string): void {
  const db = new Database(file, { fileMustExist: true, timeout: 0 });
  try {
    db.pragma("locking_mode = EXCLUSIVE");
    db.exec("BEGIN EXCLUSIVE; COMMIT");
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "SQLITE_BUSY" || code === "SQLITE_LOCKED") {
      throw new BackupError(
        `${file} is in use by a running server (or one of its workers): stop it, then restore`,
      );
    }
    throw err;
  } finally {
    db.close();
  }
}
