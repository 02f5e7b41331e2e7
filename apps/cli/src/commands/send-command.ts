import { SendMessageResponseSchema } from "@switchboard/proto/gen/chat/chat_pb";
import type { Command } from "commander";
import { type CliRuntime, createCliContext } from "../cli-context.js";
import { formatClock } from "../format.js";

/** `send ROOM TEXT --user U [--id KEY]`: SendMessage, one unary call. */
export function addSendCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("send")
    .description("store one message in a room (SendMessage)")
    .argument("<room>", "room name")
    .argument("<text>", "message content")
    .requiredOption("-u, --user <name>", "who sends it")
    .option("--id <key>", "client message id: a retry with the same id stores nothing new")
    .action(async (room: string, text: string, opts: { user: string; id?: string }, command) => {
      const ctx = createCliContext(command, runtime);
      const res = await ctx.chat.sendMessage(
        { room, user: opts.user, content: text, clientMessageId: opts.id ?? "" },
        { signal: ctx.signal },
      );
      if (ctx.json) ctx.printJson(SendMessageResponseSchema, res);
      else
        ctx.print(
          `[${room} #${res.offset} ${formatClock(res.timestamp)}] ` +
            // A retry with the same --id: nothing new was stored.
            `${res.duplicate ? `already stored as #${res.offset}` : "sent"}, id ${res.messageId}`,
        );
    });
}
