import { defineConfig } from "vitest/config";

// End-to-end tests (test/**): a real server (compiled first when stale) and the real binary.
export default defineConfig({
  test: {
    name: "cli-e2e",
    include: ["test/**/*.test.ts"],
    globalSetup: ["../server/test/build-server-once.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
