import { svelte } from "@sveltejs/vite-plugin-svelte";
import { svelteTesting } from "@testing-library/svelte/vite";
import { defineConfig } from "vitest/config";

// One project for the dashboard: component tests in jsdom (src/**/*.test.ts), and end-to-end tests
// that start the real server and drive Debian's Chromium (test/**/*.test.ts, `@vitest-environment
// node` in the file).
export default defineConfig({
  plugins: [svelte(), svelteTesting()],
  test: {
    name: "dashboard",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    environment: "jsdom",
    setupFiles: ["./vitest-setup.ts"],
    globalSetup: ["./test/build-once.ts"],
    testTimeout: 60_000,
    hookTimeout: 90_000,
  },
});
