// `switchboard chat` as a user lives it: typing while the server restarts (SIGTERM) and while it
// crashes (kill -9). Every line typed is stored once, the feed shows every stored message once,
// and EOF ends the session with exit 0.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "../../server/test/harness.js";
import { runCli, startCli } from "./harness.js";

const LINE = /^\[(?<room>[\w.-]+) #(?<offset>\d+) \d\d:\d\d:\d\d\] (?<rest>.*)$/;

interface StoredMessage {
  user: string;
  content: string;
  type?: string;
  offset: string;
}

describe("switchboard chat across server restarts", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    // SQLite, so the room's history and offsets survive both restarts.
    server = await startServer({ store: "sqlite" });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("stores every line typed before, during and after a SIGTERM and a kill -9 restart once, and shows each message once", async () => {
    const target = { url: server.baseUrl };
    const room = "restart-chat";
    await runCli(target, ["send", room, "earlier", "-u", "bob"]);
    const chat = startCli(target, ["chat", room, "-u", "alice"]);
    const type = (line: string) => chat.process.stdin?.write(`${line}\n`);
    const count = (pattern: RegExp) => (chat.stderr.match(pattern) ?? []).length;
    try {
      await chat.waitFor(
        new RegExp(`^connected as alice to room ${room} at ${server.baseUrl} \\(connect\\)$`, "m"),
        "stderr",
      );
      // The backlog and the live feed at once, before anything is typed.
      await chat.waitFor(/bob: earlier/);
      await chat.waitFor(/--> alice joined/);
      // Chatting makes alice a member at once.
      const members = await runCli(target, ["members", room]);
      expect(members.stdout).toMatch(/^alice\s+1\s/m);
      await runCli(target, ["send", room, "hi alice", "-u", "bob"]);
      await chat.waitFor(/bob: hi alice/);

      type("before 1");
      type("before 2");
      await chat.waitFor(/alice: before 2/);

      // A graceful restart: the server ends the stream ("server shutting down").
      await server.kill("SIGTERM");
      await chat.waitFor(
        /^reconnecting… \(attempt 1, next try in [\d.]+ s\): server shutting down$/m,
        "stderr",
      );
      type("during restart 1");
      type("during restart 2");
      await chat.waitFor(
        /^reconnecting… \(attempt \d+, next try in [\d.]+ s\): server unavailable \(connection refused\)$/m,
        "stderr",
      );
      await server.restart();
      await chat.waitFor(/^live again$/m, "stderr", 60_000);
      await chat.waitFor(/alice: during restart 2/, "stdout", 60_000);
      type("after restart");
      await chat.waitFor(/alice: after restart/);

      // A crash: the connection drops mid-stream, nothing is flushed.
      const before = count(/^reconnecting…/gm);
      await server.kill("SIGKILL");
      await chat.waitFor(/^reconnecting… \(attempt 1, [^)]*\): connection lost/m, "stderr");
      expect(count(/^reconnecting…/gm)).toBeGreaterThan(before);
      type("during crash");
      await server.restart();
      await chat.waitFor(/alice: during crash/, "stdout", 60_000);
      type("after crash");
      chat.process.stdin?.end();
      const result = await chat.exited;
      expect(result.code).toBe(0);
      expect(result.stdout).not.toMatch(/Echo|Server is alive|Welcome/);

      const history = await runCli(target, ["--json", "history", room, "--limit", "500"]);
      const stored = (JSON.parse(history.stdout) as { messages: StoredMessage[] }).messages;
      // Every line alice typed, stored once, in the order typed.
      expect(
        stored.filter((m) => m.user === "alice" && m.type === "CHAT").map((m) => m.content),
      ).toEqual([
        "before 1",
        "before 2",
        "during restart 1",
        "during restart 2",
        "after restart",
        "during crash",
        "after crash",
      ]);
      // What chat printed: every stored message from the first shown to its last, each once, in
      // offset order (JOIN/LEAVE included), with no gap and no duplicate.
      const printed = result.stdout
        .trim()
        .split("\n")
        .map((l) => LINE.exec(l)?.groups)
        .filter((g) => g !== undefined);
      expect(printed).toHaveLength(result.stdout.trim().split("\n").length);
      const offsets = printed.map((g) => Number(g.offset));
      const first = offsets[0] as number;
      expect(offsets).toEqual(offsets.map((_, i) => first + i));
      const last = offsets.at(-1) as number;
      expect(
        stored.filter((m) => Number(m.offset) >= first && Number(m.offset) <= last),
      ).toHaveLength(offsets.length);
      expect(printed.at(-1)?.rest).toBe("alice: after crash");
    } finally {
      chat.process.kill("SIGKILL");
    }
  }, 180_000);

  it("Ctrl-C while lines wait for the server says how many were not stored and exits 130", async () => {
    const target = { url: server.baseUrl };
    const chat = startCli(target, ["chat", "interrupted-chat", "-u", "alice"]);
    try {
      await chat.waitFor(/^connected as alice/m, "stderr");
      await server.kill("SIGKILL");
      await chat.waitFor(/^reconnecting…/m, "stderr");
      chat.process.stdin?.write("never acknowledged\n");
      // The send is queued behind the reconnection; give it a moment to be attempted.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const result = await chat.stop("SIGINT");
      expect(result.code).toBe(130);
      expect(result.stderr).toMatch(/^error: interrupted: 1 line was not confirmed as stored$/m);
    } finally {
      chat.process.kill("SIGKILL");
      await server.restart();
    }
  }, 60_000);
});
