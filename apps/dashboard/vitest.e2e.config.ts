import { defineConfig } from "vitest/config";

// End-to-end tests (test/**): the real server serving the built dashboard to Debian's Chromium
// (playwright-core). dist/ is built first when it is stale.
export default defineConfig({
  test: {
    name: "dashboard-e2e",
    include: ["test/**/*.test.ts"],
    environment: "node",
    // The dashboard and the server the tests run are built first when their sources are newer.
    globalSetup: ["./test/build-once.ts", "../server/test/build-server-once.ts"],
    testTimeout: 60_000,
    hookTimeout: 90_000,
  },
});
