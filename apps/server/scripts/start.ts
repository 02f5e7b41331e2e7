// `pnpm start`: brings the compiled server and the dashboard up to date (each only when its
// sources changed; `--help` needs neither the dashboard nor a running server), then runs the
// compiled server, dist/server.js, in this process with the user's arguments.
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildServerIfStale, SERVER_BUNDLE } from "./build-server.ts";

const args = process.argv.slice(2);
// `pnpm start -- --help` passes the `--` through.
if (args[0] === "--") args.shift();
const help = args.includes("--help") || args.includes("-h");

try {
  if (!help) {
    // The dashboard's own staleness check and build (Vite), loaded only when needed.
    const script = join(
      fileURLToPath(new URL("../../dashboard/scripts/build-if-stale.ts", import.meta.url)),
    );
    const dashboard = (await import(pathToFileURL(script).href)) as {
      buildIfStale(): Promise<boolean>;
    };
    if (await dashboard.buildIfStale()) process.stderr.write("switchboard: built the dashboard\n");
  }
  if (await buildServerIfStale()) process.stderr.write("switchboard: built the server\n");
} catch (err) {
  const reason = err instanceof Error ? err.message.split("\n")[0] : String(err);
  process.stderr.write(`switchboard: the build failed: ${reason}\n`);
  process.exit(1);
}

// Stack traces name the TypeScript sources. WORKERS>1 forks process.argv[1]: the bundle.
process.setSourceMapsEnabled(true);
process.argv = [process.argv[0] as string, SERVER_BUNDLE, ...args];
await import(pathToFileURL(SERVER_BUNDLE).href);
