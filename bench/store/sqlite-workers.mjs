// How should several node:cluster workers write one SQLite database? Two shapes, measured:
//
//   shared  every worker opens the WAL database and group-commits its own appends (one BEGIN
//           IMMEDIATE transaction and one fsync per event-loop turn per worker); SQLite serializes
//           the writers. LOCK=block waits for the write lock in SQLite's busy handler (it sleeps
//           1, 2, 5, 10, … ms, blocking the worker's event loop); LOCK=try asks with
//           busy_timeout=0 and, when the lock is taken, tries again on a later turn (the event
//           loop keeps serving meanwhile), falling back to the blocking wait after 20 ms.
//   writer  the primary is the only writer: workers send each append over node:cluster IPC and
//           wait for the answer; the primary group-commits per event-loop turn.
//   single  one process, no cluster: today's WORKERS=1.
//
// Each worker keeps INFLIGHT appends outstanding (a new one as soon as one is acknowledged),
// over ROOMS rooms, for SECONDS; the same table shapes as the store. Prints appends/s, append
// latency (p50, p99) and, for `shared`, how many transactions found the write lock taken and how
// long they waited.
//
//   MODE=shared LOCK=try WORKERS=2 node bench/store/sqlite-workers.mjs
//   MODE=writer WORKERS=2 node bench/store/sqlite-workers.mjs
//   MODE=single node bench/store/sqlite-workers.mjs
import cluster from "node:cluster";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

// better-sqlite3 as the server has it (apps/server's dependency).
const Database = createRequire(new URL("../../apps/server/package.json", import.meta.url))(
  "better-sqlite3",
);

const MODE = process.env.MODE ?? "shared";
const LOCK = process.env.LOCK ?? "try";
const WORKERS = Number(process.env.WORKERS ?? 2);
const SECONDS = Number(process.env.SECONDS ?? 5);
const INFLIGHT = Number(process.env.INFLIGHT ?? 64);
const ROOMS = Number(process.env.ROOMS ?? 10);
const RETRY = process.env.RETRY ?? "immediate";
const FALLBACK_MS = Number(process.env.FALLBACK_MS ?? 20);
const POLITE = process.env.POLITE === "1";
const CONTENT = "x".repeat(Number(process.env.BYTES ?? 100));

function openDb(file) {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  db.exec(`
    CREATE TABLE IF NOT EXISTS messages (
      room TEXT NOT NULL, room_offset INTEGER NOT NULL, id TEXT NOT NULL, user TEXT NOT NULL,
      content TEXT NOT NULL, type INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
      client_message_id TEXT, PRIMARY KEY (room, room_offset)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS rooms (name TEXT PRIMARY KEY, last_offset INTEGER NOT NULL,
      message_count INTEGER NOT NULL, epoch TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
  `);
  return db;
}

/** A group-committing appender over `db`; `lock` says how the write lock is waited for. */
function groupCommitter(db, lock, stats) {
  const insert = db.prepare(
    "INSERT INTO messages (room, room_offset, id, user, content, type, ts_ms, client_message_id) VALUES (?, ?, ?, ?, ?, 1, ?, NULL)",
  );
  const upsert = db.prepare(
    "INSERT INTO rooms (name, last_offset, message_count, epoch) VALUES (?, ?, 1, 'e') ON CONFLICT (name) DO UPDATE SET last_offset = excluded.last_offset, message_count = message_count + 1",
  );
  const selectRoom = db.prepare("SELECT last_offset FROM rooms WHERE name = ?").pluck();
  const begin = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  const rollback = db.prepare("ROLLBACK");
  const noWait = db.prepare("PRAGMA busy_timeout = 0");
  const wait = db.prepare("PRAGMA busy_timeout = 5000");
  let pending = [];
  let scheduled = false;
  let firstTry = 0;
  let lastBusy = -1e9;
  let politeUntil = 0;
  const flush = () => {
    scheduled = false;
    if (pending.length === 0) return;
    const t0 = performance.now();
    if (lock === "try") {
      noWait.get();
      try {
        begin.run();
      } catch (err) {
        if (err.code !== "SQLITE_BUSY") throw err;
        if (firstTry === 0) firstTry = t0;
        lastBusy = t0;
        if (t0 - firstTry < FALLBACK_MS) {
          stats.busyRetries++;
          scheduled = true;
          if (RETRY === "immediate") setImmediate(flush);
          else setTimeout(flush, 0);
          return;
        }
        wait.get();
        begin.run();
      } finally {
        wait.get();
      }
    } else {
      begin.run();
    }
    const started = firstTry === 0 ? t0 : firstTry;
    const waited = performance.now() - started;
    firstTry = 0;
    stats.transactions++;
    if (waited > 0.5) {
      stats.waited++;
      stats.waitMs += waited;
    }
    const batch = pending;
    pending = [];
    const last = new Map();
    try {
      for (const p of batch) {
        let at = last.get(p.room);
        if (at === undefined) at = selectRoom.get(p.room) ?? 0;
        at++;
        insert.run(p.room, at, p.id, "u", CONTENT, Date.now());
        upsert.run(p.room, at);
        last.set(p.room, at);
        p.offset = at;
      }
      commit.run();
    } catch (err) {
      rollback.run();
      throw err;
    }
    for (const p of batch) p.resolve(p.offset);
    if (stats.busyRetries > 0 && performance.now() - lastBusy < 100)
      politeUntil = performance.now() + 1;
  };
  return (room, id) =>
    new Promise((resolve) => {
      pending.push({ room, id, resolve, offset: 0 });
      if (!scheduled) {
        scheduled = true;
        if (POLITE && performance.now() < politeUntil) setTimeout(flush, 1);
        else setImmediate(flush);
      }
    });
}

/** Keeps INFLIGHT appends outstanding through `append` for SECONDS; returns latencies, ms. */
async function drive(append, tag) {
  const latencies = [];
  const stopAt = performance.now() + SECONDS * 1000;
  let n = 0;
  const loop = async () => {
    while (performance.now() < stopAt) {
      const t = performance.now();
      await append(`room-${n % ROOMS}`, `${tag}-${n++}`);
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: INFLIGHT }, loop));
  return latencies;
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
};

function report(results, seconds) {
  const all = results.flatMap((r) => r.latencies);
  const stats = results.reduce(
    (a, r) => ({
      transactions: a.transactions + (r.stats?.transactions ?? 0),
      waited: a.waited + (r.stats?.waited ?? 0),
      waitMs: a.waitMs + (r.stats?.waitMs ?? 0),
      busyRetries: a.busyRetries + (r.stats?.busyRetries ?? 0),
    }),
    { transactions: 0, waited: 0, waitMs: 0, busyRetries: 0 },
  );
  const line = {
    mode: MODE === "shared" ? `shared LOCK=${LOCK}` : MODE,
    workers: MODE === "single" ? 1 : WORKERS,
    inflight: INFLIGHT,
    appendsPerS: Math.round(all.length / seconds),
    p50ms: Number(quantile(all, 0.5).toFixed(2)),
    p99ms: Number(quantile(all, 0.99).toFixed(2)),
    ...(stats.transactions > 0
      ? {
          transactions: stats.transactions,
          perCommit: Number((all.length / stats.transactions).toFixed(1)),
          lockTakenPct: Number(((100 * stats.waited) / stats.transactions).toFixed(1)),
          meanWaitMs: stats.waited > 0 ? Number((stats.waitMs / stats.waited).toFixed(2)) : 0,
          busyRetries: stats.busyRetries,
        }
      : {}),
  };
  console.log(JSON.stringify(line));
}

if (MODE === "single") {
  const dir = mkdtempSync(join(tmpdir(), "sqlite-workers-"));
  const stats = { transactions: 0, waited: 0, waitMs: 0, busyRetries: 0 };
  const append = groupCommitter(openDb(join(dir, "db")), "block", stats);
  const latencies = await drive(append, "s");
  report([{ latencies, stats }], SECONDS);
  rmSync(dir, { recursive: true, force: true });
} else if (cluster.isPrimary) {
  const dir = mkdtempSync(join(tmpdir(), "sqlite-workers-"));
  const file = join(dir, "db");
  const db = openDb(file);
  const stats = { transactions: 0, waited: 0, waitMs: 0, busyRetries: 0 };
  const append = MODE === "writer" ? groupCommitter(db, "block", stats) : undefined;
  const results = [];
  let done = 0;
  for (let i = 0; i < WORKERS; i++) {
    const worker = cluster.fork({ DB_FILE: file });
    worker.on("message", (m) => {
      if (m.t === "append") {
        append(m.room, m.id).then((offset) => worker.send({ t: "ok", k: m.k, offset }));
      } else if (m.t === "done") {
        results.push(m);
        if (++done === WORKERS) {
          if (MODE === "writer") results.push({ latencies: [], stats });
          report(results, SECONDS);
          for (const w of Object.values(cluster.workers)) w.kill();
          db.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }
    });
  }
} else {
  const stats = { transactions: 0, waited: 0, waitMs: 0, busyRetries: 0 };
  let append;
  if (MODE === "writer") {
    const waiting = new Map();
    let k = 0;
    process.on("message", (m) => {
      if (m.t !== "ok") return;
      waiting.get(m.k)(m.offset);
      waiting.delete(m.k);
    });
    append = (room, id) =>
      new Promise((resolve) => {
        const key = k++;
        waiting.set(key, resolve);
        process.send({ t: "append", k: key, room, id, user: "u", content: CONTENT });
      });
  } else {
    append = groupCommitter(openDb(process.env.DB_FILE), LOCK, stats);
  }
  const latencies = await drive(append, `w${cluster.worker.id}`);
  process.send({ t: "done", latencies, stats });
}
