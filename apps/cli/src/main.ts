import { EXIT_INTERRUPTED, reportError } from "./cli-error.js";
import { createProgram } from "./program.js";

// The process entry: signals, parse and run, exit status. Commands are in program.ts.
const controller = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    // The first Ctrl-C cancels the running call so that streams end cleanly; a second one
    // does not wait for that.
    if (controller.signal.aborted) process.exit(EXIT_INTERRUPTED);
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
  stdout: process.stdout,
  stderr: process.stderr,
});
let status = 0;
if (process.argv.length <= 2) {
  program.outputHelp({ error: true });
  status = 2;
} else {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const { url } = program.opts<{ url?: string }>();
    status = reportError(err, process.stderr, controller.signal.aborted, url);
  }
}
// Exit explicitly: connect-node keeps idle HTTP/2 sessions open, which would hold the process.
process.stdout.write("", () => process.exit(status));
