// Compiles the server into one JavaScript file, dist/server.js, with esbuild: what `pnpm start`
// runs, and what the end-to-end tests start (test/build-server-once.ts builds it before them).
// tsx is for development: `pnpm --filter @switchboard/server dev`.
//
// The workspace's own packages (@switchboard/*, whose exports are TypeScript sources) are
// bundled; every other package stays an import resolved from node_modules at run time (native
// addons such as better-sqlite3, and pino's worker-thread transports, cannot be bundled).
//
// Files the server reads at run time beside its code (the Redis store's Lua scripts) are copied
// next to the chunks: dist/lua, as src/store/redis/scripts.ts looks for them.
//
// `node scripts/build-server.ts` builds; `--if-stale` builds only when an input is newer than
// dist/server.js (a build takes well under a second; the check, a few milliseconds).
import { cpSync, rmSync } from "node:fs";
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

/**
 * Read at run time relative to the module that reads them (`new URL("./lua/", import.meta.url)`),
 * so copied next to the bundle's chunks: source folder → folder in dist/.
 */
const RUNTIME_FILES: Array<[string, string]> = [["src/store/redis/lua", "lua"]];

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
 * splitting: `--help` loads only the first), their source maps, and the files they read
 * (dist/lua).
 */
export async function buildServer(): Promise<void> {
  const { build, stop } = await import("esbuild");
  rmSync(join(serverDir, "dist"), { recursive: true, force: true });
  // esbuild's service process would otherwise stay, idle, below the server `pnpm start` runs next.
  await using _service = { [Symbol.asyncDispose]: () => stop() };
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
  for (const [from, to] of RUNTIME_FILES) {
    cpSync(join(serverDir, from), join(serverDir, "dist", to), { recursive: true });
  }
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
