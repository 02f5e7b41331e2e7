import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const appDir = fileURLToPath(new URL("..", import.meta.url));

/** Everything the bundle is built from: the app's own sources and the workspace code it bundles. */
const INPUTS = [
  "src",
  "public",
  "index.html",
  "vite.config.ts",
  "package.json",
  "../../libs/client/src",
  "../../libs/proto/src",
];

function newestMtimeMs(path: string): number {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const entry of readdirSync(path)) {
    newest = Math.max(newest, newestMtimeMs(join(path, entry)));
  }
  return newest;
}

/** True when dist/index.html is missing or older than any input of the build. */
export function isStale(dir = appDir): boolean {
  const built = join(dir, "dist", "index.html");
  if (!existsSync(built)) return true;
  const builtAt = statSync(built).mtimeMs;
  return INPUTS.some((input) => newestMtimeMs(join(dir, input)) > builtAt);
}

/** Builds the dashboard into dist/ with Vite when it is stale; resolves to whether it built. */
export async function buildIfStale(dir = appDir): Promise<boolean> {
  if (!isStale(dir)) return false;
  const { build } = await import("vite");
  await build({ root: dir, configFile: join(dir, "vite.config.ts"), logLevel: "warn" });
  return true;
}

// `pnpm --filter @switchboard/dashboard build:if-stale` (the server's prestart).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const built = await buildIfStale();
  process.stdout.write(built ? "dashboard: built dist/\n" : "dashboard: dist/ is up to date\n");
}
