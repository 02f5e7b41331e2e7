import { describeError, subscribeResumable } from "@switchboard/client";
import { MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import type { Command } from "commander";
import {
  type CliRuntime,
  createCliContext,
  parseOffset,
  untilInterrupted,
} from "../cli-context.js";
import { formatMessage, formatReconnecting } from "../format.js";

/**
 * `subscribe ROOM --user U [--since N]`: follows a room with the resumable subscription, so it
 * keeps going across disconnects and server restarts; state changes go to stderr.
 */
export function addSubscribeCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("subscribe")
    .description(
      "print a room's messages as they arrive, reconnecting and resuming after a disconnect (SubscribeMessages)",
    )
    .argument("<room>", "room name")
    .requiredOption("-u, --user <name>", "who subscribes (shown in members)")
    .option(
      "--since <offset>",
      "replay stored messages after this offset first (0: all)",
      parseOffset,
    )
    .action(async (room: string, opts: { user: string; since?: bigint }, command: Command) => {
      const ctx = createCliContext(command, runtime);
      const messages = subscribeResumable(
        ctx.chat,
        { room, user: opts.user, ...(opts.since === undefined ? {} : { sinceOffset: opts.since }) },
        {
          signal: ctx.signal,
          onStateChange(state, detail) {
            if (state === "connecting") ctx.status(`connecting to ${ctx.options.url}…`);
            else if (state === "live") ctx.status("live");
            else if (state === "reconnecting" && detail?.error !== undefined) {
              const cause = describeError(detail.error, ctx.options.url).message;
              ctx.status(formatReconnecting(detail.attempt ?? 1, detail.delayMs ?? 0, cause));
            }
          },
        },
      );
      await untilInterrupted(ctx, async () => {
        for await (const m of messages) {
          if (ctx.json) ctx.printJson(MessageSchema, m);
          else ctx.print(formatMessage(m));
        }
      });
    });
}
