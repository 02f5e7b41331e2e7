// Builds the server for production: one ES module, dist/server.js (with a source map), from
// src/server.ts and the workspace's TypeScript packages (@switchboard/*); every other package
// stays an import from node_modules. `pnpm start` runs it with plain Node, no TypeScript loader:
// tsx compiles with esbuild's keepNames, which gives every closure created at run time a
// defineProperty("name") call and its own property array (measured: ~1.8 KiB of heap per open
// SubscribeMessages stream; bench/README.md). Tests and `pnpm dev` run the sources through tsx.
// The benchmarks bundle their peers with the same function, so every server runs the same way.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/**
 * Bundles `entry` (TypeScript) into the ES module `outfile` for Node 24. With `pinPackages`,
 * package imports are written as the absolute paths they resolve to from their importer (for
 * bundles that live outside the package whose dependencies they use: the benchmarks' peers).
 */
export async function bundle(entry, outfile, { pinPackages = false } = {}) {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    sourcemap: true,
    logLevel: "warning",
    plugins: [
      {
        name: "node-modules-external",
        setup(b) {
          // Bare imports are packages: ours (TypeScript sources) are bundled, the rest are not.
          b.onResolve({ filter: /^[^./]/ }, async (args) => {
            if (args.path.startsWith("@switchboard/") || args.pluginData === "pinning") return;
            if (!pinPackages || args.path.startsWith("node:")) return { external: true };
            const { path, errors } = await b.resolve(args.path, {
              kind: args.kind,
              resolveDir: args.resolveDir,
              pluginData: "pinning",
            });
            return errors.length > 0 ? { errors } : { path, external: true };
          });
        },
      },
    ],
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..");
  await bundle(join(root, "src/server.ts"), join(root, "dist/server.js"));
}
