import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isStale as isBuildStale } from "../../../scripts/is-stale.ts";

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

/** True when dist/index.html is missing or older than any input of the build. */
export function isStale(dir = appDir): boolean {
  return isBuildStale(dir, join("dist", "index.html"), INPUTS);
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
