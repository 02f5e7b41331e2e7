import { interruptedStatus, reportError, STOP_SIGNALS, type StopSignal } from "./cli-error.js";
import { createProgram } from "./program.js";

// The process entry: signals, parse and run, exit status. Commands are in program.ts.
const controller = new AbortController();
/** The signal that stopped the command, if one did. */
let interruptedBy: StopSignal | undefined;
for (const signal of STOP_SIGNALS) {
  process.on(signal, () => {
    // The first Ctrl-C (or SIGTERM) cancels the running call so that streams end cleanly; a
    // second one does not wait for that.
    if (interruptedBy !== undefined) process.exit(interruptedStatus(interruptedBy));
    interruptedBy = signal;
    controller.abort();
  });
}
// `switchboard subscribe … | head` closes our stdout early; that is the reader's choice.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const program = createProgram({
  signal: controller.signal,
  interruptedBy: () => interruptedBy,
  stdout: process.stdout,
  stderr: process.stderr,
});
let status = 0;
if (process.argv.length <= 2) {
  program.outputHelp({ error: true });
  status = 2;
} else {
  try {
    // `pnpm cli -- --help` passes the `--` through (pnpm 10): not an argument of ours.
    const argv =
      process.argv[2] === "--"
        ? [...process.argv.slice(0, 2), ...process.argv.slice(3)]
        : process.argv;
    await program.parseAsync(argv);
  } catch (err) {
    const { url } = program.opts<{ url?: string }>();
    status = reportError(err, process.stderr, interruptedBy, url);
  }
}
// Exit explicitly: connect-node keeps idle HTTP/2 sessions open, which would hold the process.
process.stdout.write("", () => process.exit(status));
