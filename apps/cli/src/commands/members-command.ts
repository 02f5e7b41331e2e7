import { ListMembersResponseSchema } from "@switchboard/proto/gen/chat/chat_pb";
import type { Command } from "commander";
import { type CliRuntime, createCliContext } from "../cli-context.js";
import { formatMembers } from "../format.js";

/** `members ROOM`: ListMembers as a table. */
export function addMembersCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("members")
    .description("list who is subscribed to a room now (ListMembers)")
    .argument("<room>", "room name")
    .action(async (room: string, _opts: unknown, command: Command) => {
      const ctx = createCliContext(command, runtime);
      const res = await ctx.chat.listMembers({ room }, { signal: ctx.signal });
      if (ctx.json) ctx.printJson(ListMembersResponseSchema, res);
      else for (const line of formatMembers(res.members)) ctx.print(line);
    });
}
