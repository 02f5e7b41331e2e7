import { defineConfig } from "vitest/config";

// End-to-end tests (test/**): real server processes, Redis, nginx, other clients. The whole suite
// (`pnpm test`) runs them; the unit tests beside the code are vitest.config.ts.
export default defineConfig({
  test: {
    name: "server-e2e",
    include: ["test/**/*.test.ts"],
    // The tests run the compiled server: built first when the sources are newer. One Redis
    // Cluster for the run's cluster test files, started only if one asks for it.
    globalSetup: ["./test/build-server-once.ts", "./test/redis-cluster-global.ts"],
    // A wait fails with its own message well before this (test/support.ts, `within`); this is
    // the backstop for a wait that has none.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
