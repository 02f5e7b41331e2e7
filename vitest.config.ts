import { defineConfig } from "vitest/config";

// One test run for the whole workspace: each package's own vitest.config.ts is a project.
export default defineConfig({
  test: {
    projects: ["apps/*/vitest.config.ts", "libs/*/vitest.config.ts"],
    // The JSON report gives .ci/run its closing "N passed, N failed" line.
    reporters: ["default", ["json", { outputFile: "test-results/vitest.json" }]],
  },
});
