import { buildIfStale } from "../scripts/build-if-stale.ts";

// The end-to-end tests load the built app from the real server, so dist/ must match the sources.
export default async function setup(): Promise<void> {
  await buildIfStale();
}
