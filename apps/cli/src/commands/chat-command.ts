import { createInterface } from "node:readline";
import { createChatSession, describeError } from "@switchboard/client";
import { MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import type { Command } from "commander";
import { type CliRuntime, createCliContext, integerIn } from "../cli-context.js";
import { CliError, codeName, interruptedStatus } from "../cli-error.js";
import { formatHistoryReset, formatMessage, formatReconnecting } from "../format.js";

/**
 * `chat ROOM --user U [--backlog N]`: a chat session (libs/client's ChatSession). It prints the
 * room's last N messages and then the live feed, as one stream in offset order; each stdin line
 * is sent as a message, which then appears once, from the feed. Across a server restart or a
 * lost connection it says "reconnecting…" with the cause, resumes the feed from its last offset
 * and retries unacknowledged lines with their idempotency key, so nothing is lost or doubled.
 * EOF on stdin ends it with exit 0 once every line is stored and shown; a line the server refuses
 * is reported and makes the exit status 1. When the room's log was reset (the server lost its
 * data, or a failover reused offsets) it says so and prints the new log from its start.
 */
export function addChatCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("chat")
    .description(
      "chat in a room: its last messages and live feed printed, stdin lines sent; survives server restarts (SubscribeMessages + SendMessage)",
    )
    .argument("<room>", "room name")
    .requiredOption("-u, --user <name>", "who is chatting (listed by members while chatting)")
    .option(
      "--backlog <n>",
      "stored messages shown before the live feed, 0 to 500",
      integerIn(0, 500),
      20,
    )
    .action(async (room: string, opts: { user: string; backlog: number }, command: Command) => {
      const ctx = createCliContext(command, runtime);
      const url = ctx.options.url;
      let connected = false;
      let refused = 0;
      /** Lines sent and not yet acknowledged (nor refused). */
      let unconfirmed = 0;
      const session = createChatSession(ctx.chat, {
        room,
        user: opts.user,
        backlog: opts.backlog,
        signal: ctx.signal,
        onMessage(m) {
          if (ctx.json) ctx.printJson(MessageSchema, m);
          else ctx.print(formatMessage(m));
        },
        onHistoryReset(reset) {
          ctx.status(formatHistoryReset(reset, "start"));
          return "start";
        },
        onStateChange(state) {
          if (state.status === "live") {
            ctx.status(
              connected
                ? "live again"
                : `connected as ${opts.user} to room ${room} at ${url} (${ctx.options.protocol})`,
            );
            connected = true;
          } else if (state.status === "reconnecting") {
            ctx.status(formatReconnecting(state.attempt, state.delayMs, state.cause));
          }
        },
      });

      const input = (async () => {
        // terminal: false leaves the terminal in cooked mode, so Ctrl-C still sends SIGINT.
        const lines = createInterface({ input: process.stdin, terminal: false });
        try {
          for await (const line of lines) {
            if (line.trim() === "") continue;
            unconfirmed++;
            session.send(line).then(
              () => {
                unconfirmed--;
              },
              (err: unknown) => {
                if (ctx.signal.aborted) return;
                unconfirmed--;
                refused++;
                const d = describeError(err, url);
                ctx.status(`not sent: ${JSON.stringify(line)}: ${codeName(d.code)}: ${d.message}`);
              },
            );
          }
        } finally {
          lines.close();
        }
      })();

      try {
        // The session ends by itself only on an error it cannot retry (permission_denied, …).
        await Promise.race([input, session.closed]);
        if (!ctx.signal.aborted) {
          // Said only when it takes a while (the server is away): usually the last line is
          // acknowledged within milliseconds.
          const waiting = setTimeout(() => {
            const n = session.pendingSends;
            if (n > 0) ctx.status(`waiting for ${n} line${n === 1 ? "" : "s"} to be stored…`);
          }, 1_000);
          try {
            await session.close();
          } finally {
            clearTimeout(waiting);
          }
        }
        await session.closed;
      } catch (err) {
        if (!ctx.signal.aborted) throw err;
      }
      const interruptedBy = runtime.interruptedBy();
      if (interruptedBy !== undefined && unconfirmed > 0) {
        throw new CliError(
          `interrupted: ${unconfirmed} line${unconfirmed === 1 ? " was" : "s were"} not confirmed as stored`,
          interruptedStatus(interruptedBy),
        );
      }
      if (refused > 0) {
        throw new CliError(`${refused} line${refused === 1 ? " was" : "s were"} not sent`);
      }
    });
}
