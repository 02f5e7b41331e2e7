import { type AfterReset, describeError, subscribeResumable } from "@switchboard/client";
import { type Message, MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { type Command, Option } from "commander";
import {
  type CliRuntime,
  createCliContext,
  parseOffset,
  untilInterrupted,
} from "../cli-context.js";
import { formatHistoryReset, formatMessage, formatReconnecting } from "../format.js";

/**
 * `subscribe ROOM --user U [--since N [--epoch E]] [--after-reset start|end|stop] [--watch-only]`: follows a
 * room with the resumable subscription, so it keeps going across disconnects and server
 * restarts; state changes go to stderr. When the room's log was reset (the server lost its data,
 * or a failover reused offsets) it says so on stderr and goes on as `--after-reset` says.
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
    .option(
      "--epoch <epoch>",
      "the epoch --since was read in (a welcome's or history's): a log reset since is reported",
    )
    .option(
      "--watch-only",
      "follow without joining: no JOIN or LEAVE is stored, and you are not listed in members",
    )
    .addOption(
      new Option(
        "--after-reset <what>",
        "when the room's log was reset: follow the new log from its start, its end, or stop (exit 1)",
      )
        .choices(["start", "end", "stop"])
        .default("start"),
    )
    .action(async (room: string, opts: SubscribeOptions, command: Command) => {
      const ctx = createCliContext(command, runtime);
      const show = (m: Message) => {
        if (ctx.json) ctx.printJson(MessageSchema, m);
        else ctx.print(formatMessage(m));
      };
      // The server's welcome comes with `live`, not among the stored messages: printed once,
      // from the first connection, however often the subscription reconnects.
      let welcomed = false;
      const messages = subscribeResumable(
        ctx.chat,
        {
          room,
          user: opts.user,
          ...(opts.since === undefined ? {} : { sinceOffset: opts.since }),
          ...(opts.epoch === undefined ? {} : { epoch: opts.epoch }),
          watchOnly: opts.watchOnly === true,
        },
        {
          signal: ctx.signal,
          onHistoryReset(reset) {
            ctx.status(formatHistoryReset(reset, opts.afterReset));
            return opts.afterReset;
          },
          onStateChange(state, detail) {
            if (state === "connecting") ctx.status(`connecting to ${ctx.options.url}…`);
            else if (state === "live") {
              ctx.status("live");
              if (detail?.welcome !== undefined && !welcomed) {
                welcomed = true;
                show(detail.welcome);
              }
            } else if (state === "reconnecting" && detail?.error !== undefined) {
              const cause = describeError(detail.error, ctx.options.url).message;
              ctx.status(formatReconnecting(detail.attempt ?? 1, detail.delayMs ?? 0, cause));
            }
          },
        },
      );
      await untilInterrupted(ctx, async () => {
        for await (const m of messages) show(m);
      });
    });
}

interface SubscribeOptions {
  user: string;
  since?: bigint;
  epoch?: string;
  afterReset: AfterReset;
  watchOnly?: true;
}
