import { createInterface } from "node:readline";
import { create } from "@bufbuild/protobuf";
import { type Message, MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import type { Command } from "commander";
import { type CliRuntime, createCliContext, untilInterrupted } from "../cli-context.js";
import { formatMessage } from "../format.js";

/**
 * `chat ROOM --user U`: an interactive bidi session. Each stdin line is sent as a message;
 * everything the server sends (echoes with offsets, other participants, heartbeats) is printed
 * as it arrives. EOF on stdin closes the send side; the command ends when the server ends the
 * stream.
 */
export function addChatCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("chat")
    .description("chat interactively: stdin lines go out, everything received prints (Chat, bidi)")
    .argument("<room>", "room name")
    .requiredOption("-u, --user <name>", "who is chatting")
    .action(async (room: string, opts: { user: string }, command: Command) => {
      // Bidi streaming needs HTTP/2 on every protocol: connect-node answers it over HTTP/1.1
      // with 505 HTTP Version Not Supported.
      const ctx = createCliContext(command, runtime, { forceHttp2: true });
      async function* outgoing(): AsyncGenerator<Message> {
        // Created here, when the call first asks for a message, and iterated at once: readline
        // drops the lines it reads before anyone iterates it. terminal: false leaves the
        // terminal in cooked mode, so Ctrl-C still sends SIGINT.
        const lines = createInterface({ input: process.stdin, terminal: false });
        try {
          for await (const line of lines) {
            if (line.trim() === "") continue;
            yield create(MessageSchema, { room, user: opts.user, content: line });
          }
        } finally {
          lines.close();
        }
      }
      await untilInterrupted(ctx, async () => {
        for await (const m of ctx.chat.chat(outgoing(), { signal: ctx.signal })) {
          if (ctx.json) ctx.printJson(MessageSchema, m);
          else ctx.print(formatMessage(m));
        }
      });
    });
}
