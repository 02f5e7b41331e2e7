// Blocking a test server's event loop on demand (loop-blocker.mjs, preloaded into the server
// process), for the deadlines that must measure the peer and not the server's lag.
import { fileURLToPath } from "node:url";
import type { ServerProcess } from "./harness.js";

const PRELOAD = fileURLToPath(new URL("./loop-blocker.mjs", import.meta.url));

/**
 * The environment that preloads loop-blocker.mjs into a server process: SIGUSR2 then blocks its
 * event loop for `ms` milliseconds.
 */
export function loopBlockerEnv(ms: number): Record<string, string> {
  const inherited = process.env.NODE_OPTIONS ?? "";
  return {
    NODE_OPTIONS: `${inherited} --import=${PRELOAD}`.trim(),
    LOOP_BLOCK_MS: String(ms),
  };
}

/** How many times the server's loop was blocked so far (its stderr lines). */
function blocks(server: ServerProcess): number {
  return server.stderr.split("loop blocked\n").length - 1;
}

/**
 * Blocks the event loop of `server` (started with {@link loopBlockerEnv}) and resolves once it is
 * blocked: bytes sent from now on arrive while the server cannot read them.
 * @throws when the server does not report the block within 3 s.
 */
export async function blockLoop(server: ServerProcess): Promise<void> {
  const pid = server.pid;
  if (pid === undefined) throw new Error("no server process to block");
  const before = blocks(server);
  process.kill(pid, "SIGUSR2");
  const deadline = performance.now() + 3_000;
  while (blocks(server) === before) {
    if (performance.now() > deadline) {
      throw new Error(`the server did not block its event loop on SIGUSR2:\n${server.tail()}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}
