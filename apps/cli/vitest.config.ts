import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "cli",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // End-to-end tests start a real server and run the real binary; each CLI run pays tsx's start-up.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
