import { svelte } from "@sveltejs/vite-plugin-svelte";
import { svelteTesting } from "@testing-library/svelte/vite";
import { defineConfig } from "vitest/config";

// Component and library tests in jsdom, beside the code (src/**/*.test.ts: the fast tier). The
// end-to-end tests that start the real server and drive Debian's Chromium are
// vitest.e2e.config.ts.
export default defineConfig({
  plugins: [svelte(), svelteTesting()],
  test: {
    name: "dashboard",
    include: ["src/**/*.test.ts"],
    environment: "jsdom",
    setupFiles: ["./vitest-setup.ts"],
    testTimeout: 15_000,
  },
});
