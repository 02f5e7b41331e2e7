import { defineConfig } from "vitest/config";

// End-to-end tests (test/**): the package as `pnpm pack` makes it, installed and imported.
export default defineConfig({
  test: {
    name: "client-e2e",
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
