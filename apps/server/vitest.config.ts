import { defineConfig } from "vitest/config";

// Unit and in-process tests beside the code (the fast tier, `pnpm test:fast`). The end-to-end
// tests in test/ are the project server-e2e (vitest.e2e.config.ts).
export default defineConfig({
  test: {
    name: "server",
    include: ["src/**/*.test.ts"],
    // Some start a real redis-server; none waits for long, so a hang fails within seconds.
    testTimeout: 15_000,
    hookTimeout: 15_000,
  },
});
