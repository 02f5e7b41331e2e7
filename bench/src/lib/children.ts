// Every process a bench run starts (servers, peers, Redis), so that a SIGINT or SIGTERM sent to
// the runner alone (`kill PID`, a supervisor, or `pnpm bench`, which passes it on) stops them too
// rather than leaving them running, listening and pinned to a core. Ctrl-C in a terminal signals
// the whole process group already; this covers a signal sent to the runner only.
import type { ChildProcess } from "node:child_process";
import { constants } from "node:os";

const children = new Set<ChildProcess>();
let installed = false;

/**
 * Registers `child` until it exits: on SIGINT or SIGTERM the runner sends it SIGTERM, then
 * exits with 128 + the signal's number (130, 143), as a shell reports a process the signal
 * killed. Returns `child`.
 */
export function track<C extends ChildProcess>(child: C): C {
  children.add(child);
  child.once("exit", () => children.delete(child));
  if (!installed) {
    installed = true;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        for (const c of children) c.kill("SIGTERM");
        process.exit(128 + constants.signals[signal]);
      });
    }
  }
  return child;
}
