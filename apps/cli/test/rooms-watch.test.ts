// `switchboard rooms --watch` as a user runs it: the list, then each change as it happens, as a
// table or as JSON lines, across a server restart, and a clean exit on Ctrl-C.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, ServerProcess, startCli } from "./harness.js";

describe("switchboard rooms --watch", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start("sqlite");
  });
  afterAll(async () => {
    await server?.close();
  });

  it("prints the table, then a row per change: a new room, a message, a member", async () => {
    await runCli(server, ["send", "watched-a", "hello", "-u", "ann"]);
    const watcher = startCli(server, ["rooms", "--watch"]);
    try {
      await watcher.waitFor(/^live$/m, "stderr");
      await watcher.waitFor(
        /^ROOM\s+MESSAGES\s+LAST OFFSET\s+MEMBERS\s+CONNECTIONS\nwatched-a\s+1\s+1\s+0\s+0\n/,
      );

      await runCli(server, ["send", "watched-b", "new room", "-u", "bob"]);
      await watcher.waitFor(
        /^\d\d:\d\d:\d\d watched-b {2}messages 1 {2}last offset 1 {2}members 0 {2}connections 0$/m,
      );
      const subscriber = startCli(server, ["subscribe", "watched-b", "-u", "carol"]);
      await watcher.waitFor(
        /watched-b {2}messages 2 {2}last offset 2 {2}members 1 {2}connections 1$/m,
      );
      await subscriber.stop("SIGINT");
      await watcher.waitFor(
        /watched-b {2}messages 3 {2}last offset 3 {2}members 0 {2}connections 0$/m,
      );

      // A restart: the watch reconnects and prints the list again.
      await server.stop();
      // Named as subscribe and chat name it, not as a raw ECONNREFUSED.
      await watcher.waitFor(/reconnecting… \(attempt 1, next try in [\d.]+ s\): /, "stderr");
      expect(watcher.stderr).not.toMatch(/ECONNREFUSED/);
      await server.restart();
      await watcher.waitFor(/live\n(.|\n)*live\n/, "stderr", 20_000);
      await runCli(server, ["send", "watched-a", "after the restart", "-u", "ann"]);
      await watcher.waitFor(/watched-a {2}messages 2 {2}last offset 2/m);
    } finally {
      const result = await watcher.stop("SIGINT");
      expect(result.code).toBe(0);
      expect(result.stdout.match(/^ROOM /gm)).toHaveLength(2);
    }
  });

  it("with --json prints one RoomsEvent per line", async () => {
    const watcher = startCli(server, ["--json", "rooms", "--watch"]);
    try {
      await watcher.waitFor(/"snapshot":true/);
      await runCli(server, ["send", "watched-json", "x", "-u", "dan"]);
      await watcher.waitFor(/"name":"watched-json"/);
    } finally {
      const result = await watcher.stop("SIGINT");
      expect(result.code).toBe(0);
      const events = result.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { snapshot: boolean; rooms: Array<{ name: string }> });
      expect(events[0]?.snapshot).toBe(true);
      const update = events.find((e) => e.rooms.some((r) => r.name === "watched-json"));
      expect(update).toMatchObject({
        snapshot: false,
        rooms: [
          {
            name: "watched-json",
            messageCount: "1",
            lastOffset: "1",
            subscriberCount: 0,
            memberCount: 0,
          },
        ],
        removedRooms: [],
      });
    }
  });
});
