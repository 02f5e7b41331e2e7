import { Code, ConnectError } from "@connectrpc/connect";
import { createBackoff, describeError } from "@switchboard/client";
import {
  ListRoomsResponseSchema,
  type RoomInfo,
  RoomsEventSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import type { Command } from "commander";
import { type CliContext, type CliRuntime, createCliContext } from "../cli-context.js";
import { formatReconnecting, formatRoomRow, formatRooms } from "../format.js";

/**
 * `rooms`: ListRooms as a table. `rooms --watch`: WatchRooms, the list first and then each
 * change as it comes (a table row per changed room, or with --json one RoomsEvent per line),
 * reconnecting with backoff after a disconnect (each reconnection starts with a new snapshot).
 */
export function addRoomsCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("rooms")
    .description(
      "list rooms with their message count, last offset, members (users) and connections (ListRooms); --watch follows changes (WatchRooms)",
    )
    .option("-w, --watch", "print the list, then every change as it happens, until Ctrl-C")
    .action(async (opts: { watch?: true }, command: Command) => {
      const ctx = createCliContext(command, runtime);
      if (opts.watch === true) return watchRooms(ctx);
      const res = await ctx.chat.listRooms({}, { signal: ctx.signal });
      if (ctx.json) ctx.printJson(ListRoomsResponseSchema, res);
      else for (const line of formatRooms(res.rooms)) ctx.print(line);
    });
}

async function watchRooms(ctx: CliContext): Promise<void> {
  const backoff = createBackoff({ initialMs: 500, maxMs: 10_000 });
  let attempt = 0;
  ctx.status(`connecting to ${ctx.options.url}…`);
  while (!ctx.signal.aborted) {
    let error: ConnectError | undefined;
    try {
      for await (const event of ctx.chat.watchRooms({}, { signal: ctx.signal })) {
        if (event.snapshot) {
          backoff.reset();
          attempt = 0;
          ctx.status("live");
        }
        if (ctx.json) ctx.printJson(RoomsEventSchema, event);
        else printEvent(ctx, event.snapshot, event.rooms, event.removedRooms);
      }
    } catch (err) {
      if (ctx.signal.aborted) return;
      error = ConnectError.from(err);
      // What retrying cannot fix ends the command (exit 1).
      if (FINAL.has(error.code)) throw error;
    }
    attempt++;
    const delayMs = backoff.next();
    // The same words as `subscribe` and `chat`: the cause as describeError names it.
    const why =
      error === undefined
        ? "the server ended the stream"
        : describeError(error, ctx.options.url).message;
    ctx.status(formatReconnecting(attempt, delayMs, why));
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        ctx.signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, delayMs);
      ctx.signal.addEventListener("abort", done, { once: true });
    });
  }
}

/** Codes a reconnection would only repeat. */
const FINAL = new Set([
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.InvalidArgument,
  Code.Unimplemented,
]);

function printEvent(
  ctx: CliContext,
  snapshot: boolean,
  rooms: readonly RoomInfo[],
  removed: readonly string[],
): void {
  if (snapshot) {
    for (const line of formatRooms(rooms)) ctx.print(line);
    return;
  }
  for (const room of rooms) ctx.print(formatRoomRow(room));
  for (const name of removed) ctx.print(`${name} removed`);
}
