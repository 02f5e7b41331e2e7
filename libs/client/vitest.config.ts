import { defineConfig } from "vitest/config";

// Unit tests beside the code (the fast tier); test/ (the packed package) is vitest.e2e.config.ts.
export default defineConfig({
  test: {
    name: "client",
    include: ["src/**/*.test.ts"],
    testTimeout: 15_000,
  },
});
