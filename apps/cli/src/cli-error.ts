import { constants } from "node:os";
import { Code, ConnectError } from "@connectrpc/connect";
import { describeError } from "@switchboard/client";
import { CommanderError } from "commander";

/** Exit status of a failed call or bad input. */
export const EXIT_FAILURE = 1;
/** Exit status of a usage error (unknown option, missing argument, invalid value), as in BSD's sysexits. */
export const EXIT_USAGE = 2;
/** The signals that stop the CLI: Ctrl-C's SIGINT, and SIGTERM from `kill`, a supervisor or pnpm. */
export const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;
/** One of {@link STOP_SIGNALS}. */
export type StopSignal = (typeof STOP_SIGNALS)[number];

/**
 * Exit status after `signal` interrupted a call that had not finished: 128 + the signal's
 * number, as shells report a process the signal killed (130 for SIGINT, 143 for SIGTERM).
 */
export function interruptedStatus(signal: StopSignal): number {
  return 128 + constants.signals[signal];
}

/** A failure of the CLI's own (bad input file, unreadable stdin); printed as `error: <message>`. */
export class CliError extends Error {
  override name = "CliError";
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
  ) {
    super(message);
  }
}

/** `InvalidArgument` → `invalid_argument`, the code's name on the wire (Connect protocol). */
export function codeName(code: Code): string {
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase());
}

/**
 * Prints an error as one line on stderr (`error: invalid_argument: room must match …` for an
 * RPC) and returns the exit status: 2 for usage errors, {@link interruptedStatus} (130, 143) for
 * a call cut short by `interruptedBy`, 1 otherwise. Commander has already printed its own usage
 * errors, so they are not repeated.
 * A failure of the connection itself reads as its cause (libs/client's describeError, naming
 * `baseUrl`): `error: unavailable: server unavailable (connection refused at http://…)`.
 */
export function reportError(
  err: unknown,
  stderr: { write(text: string): unknown },
  interruptedBy: StopSignal | undefined,
  baseUrl?: string,
): number {
  if (err instanceof CommanderError) {
    // Help and version end through here too, with exit code 0.
    return err.exitCode === 0 ? 0 : EXIT_USAGE;
  }
  if (err instanceof ConnectError) {
    if (interruptedBy !== undefined && err.code === Code.Canceled) {
      return interruptedStatus(interruptedBy);
    }
    const described = describeError(err, baseUrl);
    stderr.write(`error: ${codeName(described.code)}: ${described.message}\n`);
    return EXIT_FAILURE;
  }
  if (err instanceof CliError) {
    stderr.write(`error: ${err.message}\n`);
    return err.exitCode;
  }
  stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  return EXIT_FAILURE;
}
