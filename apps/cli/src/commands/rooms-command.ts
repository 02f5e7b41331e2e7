import { ListRoomsResponseSchema } from "@switchboard/proto/gen/chat/chat_pb";
import type { Command } from "commander";
import { type CliRuntime, createCliContext } from "../cli-context.js";
import { formatRooms } from "../format.js";

/** `rooms`: ListRooms as a table. */
export function addRoomsCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("rooms")
    .description("list rooms with their message count, last offset and subscribers (ListRooms)")
    .action(async (_opts: unknown, command: Command) => {
      const ctx = createCliContext(command, runtime);
      const res = await ctx.chat.listRooms({}, { signal: ctx.signal });
      if (ctx.json) ctx.printJson(ListRoomsResponseSchema, res);
      else for (const line of formatRooms(res.rooms)) ctx.print(line);
    });
}
