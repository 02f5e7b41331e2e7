import { mkdirSync, rmSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import Better from "better-sqlite3";

const N = 20000,
  B = 64;
function setup(db) {
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=${process.env.SYNC};`);
  db.exec(
    "CREATE TABLE m(room TEXT, off INTEGER, id TEXT, user TEXT, content TEXT, ts INTEGER, PRIMARY KEY(room, off)) WITHOUT ROWID",
  );
}
function run(name, open) {
  const res = {};
  for (const mode of ["single", "batch"]) {
    rmSync("/tmp/sqlbench/db", { recursive: true, force: true });
    mkdirSync("/tmp/sqlbench/db");
    const db = open("/tmp/sqlbench/db/x.db");
    setup(db);
    const ins = db.prepare("INSERT INTO m VALUES (?,?,?,?,?,?)");
    const begin = db.prepare("BEGIN"),
      commit = db.prepare("COMMIT");
    const t0 = performance.now();
    const n = mode === "single" ? 3000 : N;
    for (let i = 0; i < n; i += mode === "single" ? 1 : B) {
      begin.run();
      for (let j = 0; j < (mode === "single" ? 1 : B); j++)
        ins.run(
          "general",
          i + j + 1,
          `id${i + j}`,
          "alice",
          `hello world message ${i}`,
          Date.now(),
        );
      commit.run();
    }
    res[`${mode}_msgs_per_s`] = Math.round(n / ((performance.now() - t0) / 1000));
    const sel = db.prepare("SELECT * FROM m WHERE room=? AND off>? ORDER BY off LIMIT 500");
    const t1 = performance.now();
    for (let k = 0; k < 200; k++) sel.all("general", (k * 97) % (n - 500));
    res[`${mode}_page500_per_s`] = Math.round(200 / ((performance.now() - t1) / 1000));
    db.close();
  }
  console.log(name, process.env.SYNC, JSON.stringify(res));
}
run("node:sqlite", (p) => new DatabaseSync(p));
run("better-sqlite3", (p) => new Better(p));
