import { ruleUpperBound } from "@switchboard/client";
import {
  GetHistoryRequestSchema,
  GetHistoryResponseSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { type Command, Option } from "commander";
import { type CliRuntime, createCliContext, integerIn, parseOffset } from "../cli-context.js";
import { formatMessage } from "../format.js";

/** The largest page, chat.proto's rule on GetHistoryRequest.limit. */
const MAX_LIMIT = ruleUpperBound(GetHistoryRequestSchema.field.limit);

/** `history ROOM [--after N | --before N] [--limit N]`: one page of GetHistory. */
export function addHistoryCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("history")
    .description("print a page of a room's stored messages, oldest first (GetHistory)")
    .argument("<room>", "room name")
    .addOption(
      new Option("--after <offset>", "messages after this offset, from the oldest")
        .argParser(parseOffset)
        .conflicts("before"),
    )
    .addOption(
      new Option("--before <offset>", "the newest messages before this offset").argParser(
        parseOffset,
      ),
    )
    .addOption(
      new Option("--limit <n>", `page size, 1 to ${MAX_LIMIT}`)
        .argParser(integerIn(1, MAX_LIMIT))
        .default(100),
    )
    .action(
      async (
        room: string,
        opts: { after?: bigint; before?: bigint; limit: number },
        command: Command,
      ) => {
        const ctx = createCliContext(command, runtime);
        const page = await ctx.chat.getHistory(
          { room, afterOffset: opts.after, beforeOffset: opts.before, limit: opts.limit },
          { signal: ctx.signal },
        );
        if (ctx.json) {
          ctx.printJson(GetHistoryResponseSchema, page);
          return;
        }
        for (const m of page.messages) ctx.print(formatMessage(m));
        if (page.messages.length === 0) ctx.status(`(no messages; last offset ${page.lastOffset})`);
        if (page.hasMore) {
          // Paging on from where this page ends, in the direction it was read.
          const first = page.messages[0]?.offset ?? 0n;
          const last = page.messages.at(-1)?.offset ?? 0n;
          const next = opts.after === undefined ? `--before ${first}` : `--after ${last}`;
          ctx.status(`(more: switchboard history ${room} ${next})`);
        }
      },
    );
}
