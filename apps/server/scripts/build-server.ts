// Compiles the server into one JavaScript file, dist/server.js, with esbuild: what `pnpm start`
// runs (tsx is for development: `pnpm --filter @switchboard/server dev`, and the tests).
//
// The workspace's own packages (@switchboard/*, whose exports are TypeScript sources) are
// bundled; every other package stays an import resolved from node_modules at run time (native
// addons such as better-sqlite3, and pino's worker-thread transports, cannot be bundled).
//
// `node scripts/build-server.ts` builds; `--if-stale` builds only when an input is newer than
// dist/server.js (a build takes well under a second; the check, a few milliseconds).
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Plugin } from "esbuild";
import { isStale as isBuildStale } from "../../../scripts/is-stale.ts";

const serverDir = fileURLToPath(new URL("..", import.meta.url));

/** The compiled server. */
export const SERVER_BUNDLE = join(serverDir, "dist", "server.js");

/** Everything the bundle is built from. */
const INPUTS = [
  "src",
  "package.json",
  "scripts/build-server.ts",
  "../../libs/proto/src",
  "../../libs/proto/package.json",
  "../../pnpm-lock.yaml",
];

/** True when dist/server.js is missing or older than any input of the build (tests aside). */
export function isStale(): boolean {
  return isBuildStale(serverDir, join("dist", "server.js"), INPUTS, {
    ignore: (name) => name.endsWith(".test.ts"),
  });
}

/** Bare imports stay external, except the workspace's TypeScript packages. */
const externalPackages: Plugin = {
  name: "external-packages",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) =>
      args.path.startsWith("@switchboard/") ? undefined : { path: args.path, external: true },
    );
  },
};

/**
 * Builds dist/server.js, the chunks it imports once the configuration is valid (code
 * splitting: `--help` loads only the first), and their source maps.
 */
export async function buildServer(): Promise<void> {
  const { build } = await import("esbuild");
  rmSync(join(serverDir, "dist"), { recursive: true, force: true });
  await build({
    entryPoints: [join(serverDir, "src", "server.ts")],
    outdir: join(serverDir, "dist"),
    splitting: true,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    sourcemap: true,
    plugins: [externalPackages],
    logLevel: "warning",
  });
}

/** Builds when stale; resolves to whether it built. */
export async function buildServerIfStale(): Promise<boolean> {
  if (!isStale()) return false;
  await buildServer();
  return true;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let built = true;
  if (process.argv.includes("--if-stale")) built = await buildServerIfStale();
  else await buildServer();
  process.stdout.write(built ? "server: built dist/\n" : "server: dist/ is up to date\n");
}
