import { defineConfig } from "vitest/config";

// End-to-end tests (test/**): a real server and the real binary; each CLI run pays tsx's start-up.
export default defineConfig({
  test: {
    name: "cli-e2e",
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
