import {
  BackupError,
  type BackupSummary,
  backupDatabase,
  restoreDatabase,
} from "@switchboard/server/backup";
import { type Command, Option } from "commander";
import type { CliRuntime } from "../cli-context.js";
import { CliError } from "../cli-error.js";

/** `--data-dir`, read as the server reads DATA_DIR (relative to where the command runs). */
function dataDirOption(): Option {
  return new Option("--data-dir <dir>", "the server's DATA_DIR (where switchboard.db is)")
    .env("DATA_DIR")
    .default("./data");
}

/** The rooms of a backup, one line each, then a total. */
function describe(summary: BackupSummary): string[] {
  return [
    ...summary.rooms.map(
      (r) =>
        `  ${r.name}: epoch ${r.epoch}, offsets 1 to ${r.lastOffset}, ${r.messageCount} stored`,
    ),
    `${summary.rooms.length} rooms, ${summary.messages} messages, ${summary.bytes} bytes`,
  ];
}

/** A summary as one JSON object (offsets as strings, as protobuf JSON writes int64). */
function asJson(summary: BackupSummary, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    file: summary.file,
    bytes: summary.bytes,
    messages: summary.messages,
    rooms: summary.rooms.map((r) => ({ ...r, lastOffset: String(r.lastOffset) })),
    ...extra,
  });
}

/** Runs `fn`, turning a BackupError into the CLI's one-line error (exit status 1). */
function run<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(err.message);
    throw err;
  }
}

/**
 * `backup FILE` and `restore FILE`: the SQLite store's online backup and its restore (README
 * "Backup and restore"). They read and write the database file directly, on the server's machine;
 * no server call is made.
 */
export function addBackupCommands(program: Command, runtime: CliRuntime): void {
  const out = (line: string) => runtime.stdout.write(`${line}\n`);
  program
    .command("backup")
    .description(
      "write a consistent copy of the SQLite store to FILE while the server runs (VACUUM INTO)",
    )
    .argument("<file>", "the backup file to create (never overwritten)")
    .addOption(dataDirOption())
    .action((file: string, opts: { dataDir: string }, command: Command) => {
      const started = performance.now();
      const summary = run(() => backupDatabase(opts.dataDir, file));
      const ms = Math.round(performance.now() - started);
      if (command.optsWithGlobals<{ json?: true }>().json === true) {
        out(asJson(summary, { ms }));
        return;
      }
      out(`backed up ${opts.dataDir} to ${summary.file} in ${ms} ms`);
      for (const line of describe(summary)) out(line);
    });
  program
    .command("restore")
    .description(
      "replace the SQLite store with a backup; the server (every worker) must be stopped",
    )
    .argument("<file>", "a file written by `switchboard backup`")
    .addOption(dataDirOption())
    .option(
      "--new-epochs",
      "give every room's log a new epoch, so clients that read past the backup start over (see README)",
    )
    .action((file: string, opts: { dataDir: string; newEpochs?: true }, command: Command) => {
      const summary = run(() =>
        restoreDatabase(file, opts.dataDir, { newEpochs: opts.newEpochs === true }),
      );
      if (command.optsWithGlobals<{ json?: true }>().json === true) {
        out(asJson(summary, { previous: summary.previous ?? null, newEpochs: summary.newEpochs }));
        return;
      }
      out(`restored ${file} into ${summary.file}`);
      if (summary.previous !== undefined) out(`the database it replaced: ${summary.previous}`);
      out(
        summary.newEpochs
          ? "every room's log has a new epoch: clients following it start over from its first offset"
          : "every room keeps its log's epoch",
      );
      for (const line of describe(summary)) out(line);
    });
}
