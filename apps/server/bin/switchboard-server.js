#!/usr/bin/env node
// Runs the compiled server (dist/, rebuilt first when its sources changed), as `pnpm start` does.
await import("../scripts/start.ts");
