import { defineConfig } from "vitest/config";

// The benchmark harness's own tests (test/**): part of the whole suite (`pnpm test`), not of the
// fast tier, like every test/ folder.
export default defineConfig({
  test: {
    name: "bench-e2e",
    include: ["test/**/*.test.ts"],
    // The tests start real server processes (tsx) and run short fan-out steps.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
