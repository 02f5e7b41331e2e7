import { Command } from "commander";
import { addGlobalOptions, type CliRuntime } from "./cli-context.js";
import { addBackupCommands } from "./commands/backup-command.js";
import { addChatCommand } from "./commands/chat-command.js";
import { addHistoryCommand } from "./commands/history-command.js";
import { addLogsCommand } from "./commands/logs-command.js";
import { addMembersCommand } from "./commands/members-command.js";
import { addMetricsCommand } from "./commands/metrics-command.js";
import { addRoomsCommand } from "./commands/rooms-command.js";
import { addSendCommand } from "./commands/send-command.js";
import { addSubscribeCommand } from "./commands/subscribe-command.js";
import { addTokenCommand } from "./commands/token-command.js";
import { addUploadCommand } from "./commands/upload-command.js";

/**
 * The `switchboard` command line: global options and one subcommand per ChatService RPC (and
 * LogService's). Parsing throws CommanderError instead of exiting, so the caller decides the
 * exit status.
 */
export function createProgram(runtime: CliRuntime): Command {
  const program = addGlobalOptions(
    new Command("switchboard")
      .description("Talk to a Switchboard server over Connect, gRPC or gRPC-Web.")
      .showHelpAfterError("(add --help for usage)")
      // Subcommands made with .command() inherit both settings.
      .exitOverride()
      .configureOutput({
        writeOut: (text) => runtime.stdout.write(text),
        writeErr: (text) => runtime.stderr.write(text),
      }),
  );
  addSendCommand(program, runtime);
  addSubscribeCommand(program, runtime);
  addUploadCommand(program, runtime);
  addChatCommand(program, runtime);
  addMetricsCommand(program, runtime);
  addHistoryCommand(program, runtime);
  addRoomsCommand(program, runtime);
  addMembersCommand(program, runtime);
  addLogsCommand(program, runtime);
  addTokenCommand(program, runtime);
  addBackupCommands(program, runtime);
  return program;
}
