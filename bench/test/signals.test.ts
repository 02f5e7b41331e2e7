// `pnpm bench` stopped by a signal sent to the pnpm process alone (`kill PID`, a supervisor): the
// runner receives it (the scripts exec their process), stops the servers it started, and exits
// 143; no process is left running, listening or pinned to a core.
import { afterEach, expect, it } from "vitest";
import {
  commandOf,
  descendantsOf,
  PnpmRun,
  untilGone,
} from "../../apps/server/test/process-tree.js";

const runs: PnpmRun[] = [];
afterEach(() => {
  for (const run of runs.splice(0)) run.killGroup();
});

it("SIGTERM to pnpm bench stops the runner and every server it started, exit 143", async () => {
  const run = new PnpmRun(["bench", "--", "--quick"]);
  runs.push(run);
  // Until the runner has started its first server.
  const deadline = Date.now() + 60_000;
  let below: number[] = [];
  while (!below.some((pid) => commandOf(pid).includes("src/server.ts"))) {
    if (Date.now() > deadline) {
      throw new Error(`no server below pnpm bench in 60 s:\n${run.stdout}\n${run.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
    below = descendantsOf(run.pid);
  }
  const result = await run.signal("SIGTERM");
  await untilGone(below);
  expect(result.code, result.stderr).toBe(143);
});
