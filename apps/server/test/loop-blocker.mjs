// Test-only preload for a server process (NODE_OPTIONS="--import <this file>"): on SIGUSR2 the
// process blocks its event loop for LOOP_BLOCK_MS (a busy-wait), as a burst of work or a long GC
// pause blocks it. It writes "loop blocked" to stderr first (a pipe: written at once on Linux),
// so a test knows when bytes it sends arrive while the loop cannot read them.
const blockMs = Number(process.env.LOOP_BLOCK_MS ?? "2000");

process.on("SIGUSR2", () => {
  process.stderr.write("loop blocked\n");
  const end = performance.now() + blockMs;
  while (performance.now() < end) {
    // busy
  }
  process.stderr.write("loop unblocked\n");
});
