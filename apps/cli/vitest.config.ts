import { defineConfig } from "vitest/config";

// Unit tests beside the code (the fast tier); the end-to-end tests are vitest.e2e.config.ts.
export default defineConfig({
  test: {
    name: "cli",
    include: ["src/**/*.test.ts"],
    testTimeout: 15_000,
  },
});
