#!/usr/bin/env node
// Runs the server from its TypeScript sources (no build step), as `pnpm start` does.
import { register } from "tsx/esm/api";

register();
await import("../src/server.ts");
