import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "server",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // End-to-end tests start real server processes; unit tests finish far below this.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One Redis Cluster for the run's cluster test files, started only if one asks for it.
    globalSetup: ["test/redis-cluster-global.ts"],
  },
});
