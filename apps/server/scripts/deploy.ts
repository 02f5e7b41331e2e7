// `pnpm deploy:server <dir>`: a self-contained server in <dir>, run with plain `node` and nothing
// from this workspace (README "Production"). Layout:
//
//   <dir>/server/dist/server.js   the bundle (esbuild, scripts/build-server.ts) and its chunks
//   <dir>/server/node_modules/    production dependencies only, with better-sqlite3's native addon
//   <dir>/server/package.json
//   <dir>/dashboard/dist/         the built dashboard, where the bundle looks for it
//                                 (src/dashboard.ts: ../../dashboard/dist from dist/)
//
// The dependencies come from `pnpm deploy --prod` (pnpm's own path for this: a package of the
// workspace with its production dependencies, copied from the store; `--legacy` because this
// workspace does not inject its packages). The package's `files` field limits the copy to dist/,
// which is then replaced by a fresh bundle built straight into <dir> (never apps/server/dist,
// which tests and `pnpm start` may be running from).
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildServer } from "./build-server.ts";

const serverDir = fileURLToPath(new URL("..", import.meta.url));
const dashboardDir = join(serverDir, "..", "dashboard");

const target = process.argv[2];
if (target === undefined || target.startsWith("-")) {
  process.stderr.write("usage: pnpm deploy:server <dir>   (a new or empty directory)\n");
  process.exit(2);
}
const out = resolve(target);
if (existsSync(out) && readdirSync(out).length > 0) {
  process.stderr.write(`deploy: ${out} is not empty; give a new or empty directory\n`);
  process.exit(1);
}

const dashboard = (await import(
  pathToFileURL(join(dashboardDir, "scripts", "build-if-stale.ts")).href
)) as { buildIfStale(): Promise<boolean> };
await dashboard.buildIfStale();
rmSync(out, { recursive: true, force: true });
execFileSync(
  "pnpm",
  ["--filter", "@switchboard/server", "deploy", "--prod", "--legacy", join(out, "server")],
  { stdio: ["ignore", "ignore", "inherit"] },
);
// Always a fresh bundle: a production build never ships a stale one.
await buildServer(join(out, "server", "dist"));
cpSync(join(dashboardDir, "dist"), join(out, "dashboard", "dist"), { recursive: true });
process.stdout.write(
  `deploy: ${out} is ready; run it with Node 24: node ${join(out, "server", "dist", "server.js")}\n`,
);
