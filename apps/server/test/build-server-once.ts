import { buildServerIfStale } from "../scripts/build-server.ts";

// The end-to-end tests run the compiled server, dist/server.js (what `pnpm start` runs), so it
// must match the sources: built here, before any test, when an input is newer (under a second).
// A server process then starts in about half the time tsx takes to compile the sources.
export default async function setup(): Promise<void> {
  await buildServerIfStale();
}
