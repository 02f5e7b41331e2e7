// `switchboard subscribe` and `switchboard chat` when the room's log is reset under them: a
// memory-store server restarts and loses every room. Each says so on stderr (the epoch it had is
// gone, where the new log stands) and prints the new log from its start, instead of skipping the
// new log's first offsets as if they were the ones it had already shown.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "../../server/test/harness.js";
import { runCli, startCli } from "./harness.js";

const RESET =
  /^history of room reset-room was reset: epoch (?<old>[\w-]{12}) \(this client was at offset (?<at>\d+)\) is gone; the room's log is now epoch (?<now>[\w-]{12}), offsets 1 to \d+; (?<next>.*)$/m;

describe("the CLI when a room's history is reset (memory store restart)", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ store: "memory" });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("subscribe and chat say so, then print the new log from its start; --after-reset stop exits 1", async () => {
    const target = { url: server.baseUrl };
    const room = "reset-room";
    for (const content of ["old 1", "old 2", "old 3"]) {
      await runCli(target, ["send", room, content, "-u", "bob"]);
    }
    const subscribe = startCli(target, ["subscribe", room, "-u", "carol", "--since", "0"]);
    const chat = startCli(target, ["chat", room, "-u", "alice"]);
    const stopper = startCli(target, [
      ...["subscribe", room, "-u", "dave", "--since", "0", "--after-reset", "stop"],
    ]);
    try {
      for (const child of [subscribe, chat, stopper]) await child.waitFor(/bob: old 3/);
      await subscribe.waitFor(/--> dave joined/);

      await server.kill("SIGKILL");
      await server.restart();
      await runCli(target, ["send", room, "new after restart", "-u", "bob"]);

      for (const child of [subscribe, chat]) {
        await child.waitFor(RESET, "stderr", 30_000);
        const reset = RESET.exec(child.stderr)?.groups;
        expect(reset?.old).not.toBe(reset?.now);
        expect(Number(reset?.at)).toBeGreaterThanOrEqual(5);
        expect(reset?.next).toBe("following it from its start");
        await child.waitFor(/\[reset-room #\d+ [\d:]+\] bob: new after restart/, "stdout", 30_000);
      }
      // Printed after the reset: the new log, whose offsets start again at 1.
      const after = subscribe.stdout.slice(subscribe.stdout.lastIndexOf("old 3"));
      expect(after).toMatch(/\[reset-room #1 [\d:]+\] /);

      const stopped = await stopper.exited;
      expect(stopped.code).toBe(1);
      expect(stopped.stderr).toMatch(RESET);
      expect(RESET.exec(stopped.stderr)?.groups?.next).toBe("stopping");
      expect(stopped.stderr).toMatch(
        /^error: failed_precondition: history of room reset-room was reset \(epoch [\w-]{12} is gone\): its log is now epoch [\w-]{12}, offsets 1 to \d+$/m,
      );
    } finally {
      for (const child of [subscribe, chat, stopper]) child.process.kill("SIGKILL");
    }
  }, 120_000);
});
