#!/usr/bin/env node
// Runs the CLI from its TypeScript sources (no build step), like `node --import tsx src/main.ts`.
import { register } from "tsx/esm/api";

register();
await import("../src/main.ts");
