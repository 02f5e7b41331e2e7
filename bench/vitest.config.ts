import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "bench",
    include: ["test/**/*.test.ts"],
    // The tests start real server processes (tsx) and run short fan-out steps.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
