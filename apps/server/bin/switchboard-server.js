#!/usr/bin/env node
// Runs the built server (dist/server.js, from `pnpm --filter @switchboard/server build`, which
// `pnpm start` runs first).
import { existsSync } from "node:fs";

const built = new URL("../dist/server.js", import.meta.url);
if (!existsSync(built)) {
  process.stderr.write(
    "switchboard-server: dist/server.js is missing; build it with `pnpm --filter @switchboard/server build` (or run `pnpm start`)\n",
  );
  process.exit(1);
}
await import(built.href);
