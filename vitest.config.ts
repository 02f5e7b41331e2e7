import { defineConfig } from "vitest/config";

// One test run for the whole workspace. Two tiers, by where a test lives:
// - `<package>` projects (vitest.config.ts): unit and in-process tests beside the code,
//   src/**/*.test.ts. `pnpm test:fast` runs these (with lint and types) for everyday work.
// - `<package>-e2e` projects (vitest.e2e.config.ts, bench/): everything in a test/ folder, which
//   starts real servers, Redis, nginx, Chromium. `pnpm test` runs both tiers.
// The scripts in package.json run one test file per core (`--maxWorkers=100%`; vitest's default
// leaves one core free, which is one worker on a 2-core machine): the end-to-end tests mostly
// wait on servers, timers and graces. (A project file does not inherit maxWorkers from here.)
export default defineConfig({
  test: {
    projects: [
      "apps/*/vitest.config.ts",
      "apps/*/vitest.e2e.config.ts",
      "libs/*/vitest.config.ts",
      "libs/*/vitest.e2e.config.ts",
      "bench/vitest.config.ts",
    ],
    // The JSON report gives .ci/run its closing "N passed, N failed" line.
    reporters: ["default", ["json", { outputFile: "test-results/vitest.json" }]],
  },
});
