import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { PrimaryLink } from "../../cluster-channel.js";
import { newEpoch } from "../epoch.js";
import { kindOfCode, MESSAGE_KIND_CODES } from "../message-kind-codes.js";
import {
  type AppendResult,
  type HistoryPage,
  type HistoryQuery,
  type JoinedMember,
  type LiveMessage,
  type MessageDraft,
  type MessageStore,
  type RoomStats,
  type StoredMessage,
  StoreUnavailableError,
  type WriteContention,
} from "../message-store.js";
import { DATABASE_FILE } from "./backup.js";
import { SqliteFeeds, type WakeEntry } from "./feeds.js";

/**
 * The settings the SQLite store's durability and concurrency rest on, applied to its connection
 * when it opens (SQLite documentation, "Pragma statements"):
 *
 * - `journal_mode = WAL`: readers do not block the writer, and a commit is one append to the WAL.
 * - `synchronous = FULL` (2): every commit is fsynced before it is acknowledged, so an answered
 *   append survives power loss. (WAL alone survives a killed process at any level, so only
 *   this setting tells the two apart.)
 * - `busy_timeout = 5000`: a second connection (another worker of WORKERS=N, an operator's
 *   `sqlite3` shell, a backup) makes a write wait up to 5 s instead of failing at once with
 *   SQLITE_BUSY. (The store's own group commits wait for the write lock without blocking the
 *   event loop, for as long: see {@link createSqliteStore}.)
 */
export const SQLITE_PRAGMAS = {
  journal_mode: "WAL",
  synchronous: "FULL",
  busy_timeout: 5000,
} as const;

/** The SQLite store: a MessageStore whose connection can be asked for its settings. */
export interface SqliteStore extends MessageStore {
  /**
   * The current value of a pragma on the store's own connection (`synchronous` is per
   * connection: another connection to the same file would not see it), e.g. `synchronous` → 2.
   */
  pragma(name: string): unknown;
  contention(): WriteContention;
}

/** Options of {@link createSqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * This process is a worker of WORKERS=N and shares the database with the others: its change
   * feeds follow their appends through the primary (store/sqlite/coordinator.ts), and it tells
   * the primary about its own. Without it, this process is the database's only writer.
   */
  link?: PrimaryLink | undefined;
}

/** After a group commit that had to wait for the write lock, the next one waits this long, ms. */
const YIELD_MS = 1;

/**
 * The embedded store: one SQLite database file, `<dataDir>/switchboard.db`, in WAL mode with
 * `synchronous=FULL`, so an acknowledged message survives `kill -9` and power loss.
 *
 * Appends are group-committed: every append that arrives within one event-loop turn shares one
 * transaction and one fsync (bench/store/RESULTS.md: ~4k msgs/s with a commit per message,
 * ~120k with 64 per commit). Offsets are assigned inside the write transaction (`BEGIN
 * IMMEDIATE`), from a copy of each room's last offset and epoch kept in memory while no other
 * connection has written (`PRAGMA data_version`, read inside the transaction, says when one
 * has: the copy is then dropped and read again).
 *
 * Several processes may share the database (WORKERS=N, `options.link`): SQLite serializes their
 * transactions, so offsets stay gapless and each room gets one epoch, and an idempotency key or a
 * presence event is checked against every process's commits. A group commit that finds the
 * write lock taken does not wait inside SQLite (whose busy handler sleeps, blocking the event
 * loop); it tries again on a later turn, with the appends that arrived meanwhile, for up to
 * `busy_timeout` (then its appends fail with StoreUnavailableError). After such a wait, the next
 * commit lets {@link YIELD_MS} pass first, so that a worker that waited gets its turn
 * (`bench/store/sqlite-workers.mjs` measures the shapes). Each process's change feeds read the
 * others' commits from the database when woken (feeds.ts). History reads see one snapshot.
 *
 * The `members` table is who the history says is in each room (a JOIN with no later LEAVE),
 * written in the same transaction as the JOIN or LEAVE itself: after a restart or a `kill -9`
 * it names exactly the members whose LEAVE is still owed.
 *
 * A room's epoch is a column of its `rooms` row, written with the room's first message (in its
 * transaction), so it lasts exactly as long as the room's offsets do: across restarts, and gone
 * with the database file. A database from before the column gets one per room when opened.
 */
export function createSqliteStore(dataDir: string, options: SqliteStoreOptions = {}): SqliteStore {
  const { join: JOIN, leave: LEAVE } = MESSAGE_KIND_CODES;
  mkdirSync(dataDir, { recursive: true });
  const db = new Database(join(dataDir, DATABASE_FILE));
  for (const [name, value] of Object.entries(SQLITE_PRAGMAS)) db.pragma(`${name} = ${value}`);
  db.exec(`
    CREATE TABLE IF NOT EXISTS messages (
      room TEXT NOT NULL,
      room_offset INTEGER NOT NULL,
      id TEXT NOT NULL,
      user TEXT NOT NULL,
      content TEXT NOT NULL,
      type INTEGER NOT NULL,
      ts_ms INTEGER NOT NULL,
      client_message_id TEXT,
      PRIMARY KEY (room, room_offset)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
      ON messages (room, client_message_id) WHERE client_message_id IS NOT NULL;
    CREATE TABLE IF NOT EXISTS rooms (
      name TEXT PRIMARY KEY,
      last_offset INTEGER NOT NULL,
      message_count INTEGER NOT NULL,
      epoch TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
  `);
  // The upgrades below run in IMMEDIATE transactions: a worker of WORKERS=N opening the file at
  // the same moment waits for the write lock rather than failing on an upgrade from a read.
  const roomColumns = db.prepare("SELECT name FROM pragma_table_info('rooms')").pluck().all();
  if (!roomColumns.includes("epoch")) {
    // A database from before epochs: each room's log gets one now, kept from here on.
    db.transaction(() => {
      const columns = db.prepare("SELECT name FROM pragma_table_info('rooms')").pluck().all();
      if (columns.includes("epoch")) return;
      db.exec("ALTER TABLE rooms ADD COLUMN epoch TEXT NOT NULL DEFAULT ''");
      const setEpoch = db.prepare("UPDATE rooms SET epoch = ? WHERE name = ?");
      for (const name of db.prepare("SELECT name FROM rooms").pluck().all() as string[]) {
        setEpoch.run(newEpoch(), name);
      }
    }).immediate();
  }
  const hasMembers = () =>
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'members'").get() !==
    undefined;
  if (!hasMembers()) {
    // A database from before the table: each user's latest JOIN or LEAVE says whether they are
    // in (SQLite returns the bare columns of the row that has the MAX).
    db.transaction(() => {
      if (hasMembers()) return;
      db.exec(`
        CREATE TABLE members (
          room TEXT NOT NULL,
          user TEXT NOT NULL,
          joined_ms INTEGER NOT NULL,
          PRIMARY KEY (room, user)
        ) WITHOUT ROWID;
      `);
      db.prepare(
        `INSERT INTO members (room, user, joined_ms)
         SELECT room, user, ts_ms FROM (
           SELECT room, user, type, ts_ms, MAX(room_offset) FROM messages
           WHERE type IN (?, ?) GROUP BY room, user
         ) WHERE type = ?`,
      ).run(JOIN, LEAVE, JOIN);
    }).immediate();
  }

  const insertMessage = db.prepare(
    "INSERT INTO messages (room, room_offset, id, user, content, type, ts_ms, client_message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  );
  // The epoch is written with the room's first message only (the conflict keeps it).
  const upsertRoom = db.prepare(
    "INSERT INTO rooms (name, last_offset, message_count, epoch) VALUES (?, ?, 1, ?) ON CONFLICT (name) DO UPDATE SET last_offset = excluded.last_offset, message_count = message_count + 1",
  );
  const selectRoom = db.prepare("SELECT last_offset, epoch FROM rooms WHERE name = ?");
  const selectByKey = db.prepare("SELECT * FROM messages WHERE room = ? AND client_message_id = ?");
  const selectAfter = db.prepare(
    "SELECT * FROM messages WHERE room = ? AND room_offset > ? AND room_offset < ? ORDER BY room_offset ASC LIMIT ?",
  );
  const selectBefore = db.prepare(
    "SELECT * FROM messages WHERE room = ? AND room_offset < ? ORDER BY room_offset DESC LIMIT ?",
  );
  const selectRooms = db.prepare(
    "SELECT name, last_offset, message_count, epoch FROM rooms ORDER BY name",
  );
  const selectMember = db.prepare("SELECT 1 FROM members WHERE room = ? AND user = ?").pluck();
  const insertMember = db.prepare("INSERT INTO members (room, user, joined_ms) VALUES (?, ?, ?)");
  const deleteMember = db.prepare("DELETE FROM members WHERE room = ? AND user = ?");
  const selectMembers = db.prepare("SELECT room, user, joined_ms FROM members");
  const selectRoomMembers = db.prepare("SELECT room, user, joined_ms FROM members WHERE room = ?");
  const dataVersion = db.prepare("PRAGMA data_version").pluck();
  const beginImmediate = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  const rollback = db.prepare("ROLLBACK");
  const noWait = db.prepare("PRAGMA busy_timeout = 0");
  const wait = db.prepare(`PRAGMA busy_timeout = ${SQLITE_PRAGMAS.busy_timeout}`);

  const readPosition = (room: string): { last: number; epoch: string } => {
    const row = selectRoom.get(room) as { last_offset: number; epoch: string } | undefined;
    return { last: row?.last_offset ?? 0, epoch: row?.epoch ?? "" };
  };
  /**
   * Each room's last offset and epoch ("" before its first message), as this connection last
   * read or wrote them: valid while `data_version` says no other connection has committed.
   * Used inside the write transaction only.
   */
  const positions = new Map<string, { last: number; epoch: string }>();
  let seenVersion: unknown;
  const position = (room: string): { last: number; epoch: string } => {
    let at = positions.get(room);
    if (at === undefined) {
      at = readPosition(room);
      positions.set(room, at);
    }
    return at;
  };

  // A page of history and the room's position, from one snapshot.
  const readPage = db.transaction((query: HistoryQuery): HistoryPage => {
    const { last, epoch } = readPosition(query.room);
    const { afterOffset, beforeOffset, limit } = query;
    if (afterOffset !== undefined) {
      const rows = selectAfter.all(
        query.room,
        afterOffset,
        beforeOffset ?? Number.MAX_SAFE_INTEGER,
        limit + 1,
      ) as Row[];
      const hasMore = rows.length > limit;
      return { messages: rows.slice(0, limit).map(fromRow), lastOffset: last, hasMore, epoch };
    }
    const rows = selectBefore.all(
      query.room,
      beforeOffset ?? Number.MAX_SAFE_INTEGER,
      limit + 1,
    ) as Row[];
    const hasMore = rows.length > limit;
    return {
      messages: rows.slice(0, limit).reverse().map(fromRow),
      lastOffset: last,
      hasMore,
      epoch,
    };
  });

  const link = options.link;
  const feeds = new SqliteFeeds(
    {
      position: readPosition,
      after: (room, offset, limit) =>
        (selectAfter.all(room, offset, Number.MAX_SAFE_INTEGER, limit) as Row[]).map(fromRow),
    },
    link === undefined
      ? undefined
      : {
          follow: async (room) => {
            await link.request("feed.follow", room);
          },
          unfollow: (room) => link.notify("feed.unfollow", room),
        },
  );
  link?.on("feed.wake", (woken: WakeEntry[]) => {
    for (const [room, offset, traces] of woken) feeds.wake(room, offset, traces);
  });
  link?.on("feed.resync", () => feeds.resync());

  interface Pending {
    drafts: readonly MessageDraft[];
    signal: AbortSignal | undefined;
    resolve: (results: AppendResult[]) => void;
    reject: (err: unknown) => void;
  }
  let pending: Pending[] = [];
  let flushScheduled = false;
  let closed = false;
  /** When the current group commit first found the write lock taken (performance.now()). */
  let lockedSince: number | undefined;
  /** Until when (performance.now()) the next group commit lets the other writers go first. */
  let yieldUntil = 0;
  const contention: WriteContention = { transactions: 0, waits: 0, waitSeconds: 0 };

  const writeBatch = (batch: Pending[]): AppendResult[][] =>
    batch.map(({ drafts }) =>
      drafts.map((draft): AppendResult => {
        const at = position(draft.room);
        if (draft.clientMessageId !== "") {
          const row = selectByKey.get(draft.room, draft.clientMessageId) as Row | undefined;
          if (row !== undefined) return { message: fromRow(row), duplicate: true, epoch: at.epoch };
        }
        if (draft.kind !== "chat") {
          // A JOIN for a joined user, or a LEAVE for one who is not, is not stored.
          const joined = selectMember.get(draft.room, draft.user) !== undefined;
          if (joined === (draft.kind === "join")) {
            return { message: { ...draft, offset: 0 }, duplicate: true, epoch: at.epoch };
          }
          if (joined) deleteMember.run(draft.room, draft.user);
          else insertMember.run(draft.room, draft.user, draft.timestampMs);
        }
        const offset = at.last + 1;
        // The room's first message creates its log, and with it the log's epoch.
        const epoch = at.epoch === "" ? newEpoch() : at.epoch;
        insertMessage.run(
          draft.room,
          offset,
          draft.id,
          draft.user,
          draft.content,
          MESSAGE_KIND_CODES[draft.kind],
          draft.timestampMs,
          draft.clientMessageId === "" ? null : draft.clientMessageId,
        );
        upsertRoom.run(draft.room, offset, epoch);
        positions.set(draft.room, { last: offset, epoch });
        const message: LiveMessage = { ...draft, offset, epoch };
        return { message, duplicate: false, epoch };
      }),
    );

  /**
   * Takes the write lock: true when taken. With `block`, waits inside SQLite (busy_timeout);
   * otherwise fails at once when another connection holds it.
   * @throws SqliteError other than SQLITE_BUSY.
   */
  const begin = (block: boolean): boolean => {
    if (block) {
      beginImmediate.run();
      return true;
    }
    noWait.get();
    try {
      beginImmediate.run();
      return true;
    } catch (err) {
      if ((err as { code?: unknown }).code === "SQLITE_BUSY") return false;
      throw err;
    } finally {
      wait.get();
    }
  };

  const schedule = (delayMs: number): void => {
    flushScheduled = true;
    if (delayMs > 0) setTimeout(flush, delayMs);
    else setImmediate(flush);
  };

  const flush = (block = false): void => {
    flushScheduled = false;
    // An append whose caller gave up (deadline, cancel) while it waited is not written.
    const batch: Pending[] = [];
    for (const p of pending) {
      if (p.signal?.aborted) p.reject(p.signal.reason);
      else batch.push(p);
    }
    pending = [];
    if (batch.length === 0) return;
    const now = performance.now();
    let locked: boolean;
    try {
      locked = begin(block);
    } catch (err) {
      lockedSince = undefined;
      for (const p of batch) p.reject(err);
      return;
    }
    if (!locked) {
      lockedSince ??= now;
      if (now - lockedSince < SQLITE_PRAGMAS.busy_timeout) {
        // Another connection writes: try again on a later turn, with what arrives meanwhile.
        pending = batch.concat(pending);
        schedule(YIELD_MS);
        return;
      }
      lockedSince = undefined;
      const err = new StoreUnavailableError(
        `the database is locked by another connection for more than ${SQLITE_PRAGMAS.busy_timeout} ms`,
      );
      for (const p of batch) p.reject(err);
      return;
    }
    contention.transactions++;
    if (lockedSince !== undefined) {
      contention.waits++;
      contention.waitSeconds += (now - lockedSince) / 1000;
      lockedSince = undefined;
      // Let the others have the lock before this process takes it again.
      yieldUntil = performance.now() + YIELD_MS;
    }
    let results: AppendResult[][];
    try {
      // Another connection committed since this one last looked: its offsets and epochs are
      // in the database, not in the copy.
      const version = dataVersion.get();
      if (version !== seenVersion) {
        positions.clear();
        seenVersion = version;
      }
      results = writeBatch(batch);
      commit.run();
    } catch (err) {
      if (db.inTransaction) rollback.run();
      // Offsets (and epochs) handed out inside the failed transaction were rolled back: forget
      // the cached ones; each room's is read again from the rooms table when next needed.
      // (Copying the cache before every commit would cost work per room on every flush.)
      positions.clear();
      for (const p of batch) p.reject(err);
      return;
    }
    // Announce before resolving: a caller that awaited its append finds it already fanned out.
    const newest = new Map<string, number>();
    // The appends' trace contexts, per room, for the other workers' delivery spans: only when
    // tracing is on and sampled them (MessageDraft.trace); otherwise no byte more on the IPC.
    let traced: Map<string, Array<[number, string]>> | undefined;
    for (const appended of results) {
      const stored: LiveMessage[] = [];
      for (const r of appended) {
        if (r.duplicate) continue;
        stored.push(r.message as LiveMessage);
        newest.set(r.message.room, r.message.offset);
        if (link !== undefined && r.message.trace !== undefined) {
          traced ??= new Map();
          let list = traced.get(r.message.room);
          if (list === undefined) {
            list = [];
            traced.set(r.message.room, list);
          }
          list.push([r.message.offset, r.message.trace]);
        }
      }
      feeds.announce(stored);
    }
    // The other workers' feeds read these once woken (through the primary, to those that
    // follow the rooms): [room, newest offset] or [room, newest offset, [[offset, trace], …]].
    if (link !== undefined && newest.size > 0) {
      const entries: WakeEntry[] = [];
      for (const [room, offset] of newest) {
        const traces = traced?.get(room);
        entries.push(traces === undefined ? [room, offset] : [room, offset, traces]);
      }
      link.notify("feed.appended", entries);
    }
    for (const [i, p] of batch.entries()) p.resolve(results[i] as AppendResult[]);
  };

  return {
    append(drafts, signal) {
      if (closed) return Promise.reject(new Error("store is closed"));
      if (signal?.aborted) return Promise.reject(signal.reason);
      return new Promise((resolve, reject) => {
        pending.push({ drafts, signal, resolve, reject });
        if (!flushScheduled) schedule(yieldUntil - performance.now());
      });
    },
    async read(query: HistoryQuery, signal?: AbortSignal): Promise<HistoryPage> {
      signal?.throwIfAborted();
      return readPage(query);
    },
    async rooms(): Promise<RoomStats[]> {
      return (selectRooms.all() as RoomRow[]).map((r) => ({
        name: r.name,
        lastOffset: r.last_offset,
        messageCount: r.message_count,
        epoch: r.epoch,
      }));
    },
    async joined(room?: string): Promise<JoinedMember[]> {
      const rows = (
        room === undefined ? selectMembers.all() : selectRoomMembers.all(room)
      ) as MemberRow[];
      return rows.map((r) => ({ room: r.room, user: r.user, joinedAtMs: r.joined_ms }));
    },
    async watch(room, feed) {
      return feeds.watch(room, feed);
    },
    async ping() {
      db.prepare("SELECT 1").get();
    },
    pragma(name) {
      if (!/^[a-z_]+$/.test(name)) throw new Error(`not a pragma name: ${name}`);
      return db.pragma(name, { simple: true });
    },
    contention: () => ({ ...contention }),
    async close() {
      if (closed) return;
      // What is still pending is written now, waiting for the lock inside SQLite if need be.
      flush(true);
      closed = true;
      db.close();
    },
  };
}

interface Row {
  room: string;
  room_offset: number;
  id: string;
  user: string;
  content: string;
  type: number;
  ts_ms: number;
  client_message_id: string | null;
}

interface MemberRow {
  room: string;
  user: string;
  joined_ms: number;
}

interface RoomRow {
  name: string;
  last_offset: number;
  message_count: number;
  epoch: string;
}

function fromRow(row: Row): StoredMessage {
  return {
    id: row.id,
    room: row.room,
    user: row.user,
    content: row.content,
    kind: kindOfCode(row.type),
    timestampMs: row.ts_ms,
    clientMessageId: row.client_message_id ?? "",
    offset: row.room_offset,
  };
}
