// The CLI as a user runs it: the real `switchboard` binary against a real server process.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, runCli, ServerProcess, startCli } from "./harness.js";

const LINE = /^\[(?<room>[\w.-]+) #(?<offset>\d+) \d\d:\d\d:\d\d\] (?<rest>.*)$/;

describe("switchboard CLI", () => {
  let server: ServerProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-cli-"));
    server = await ServerProcess.start("memory");
  });

  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("send stores a message that history then shows, with its offset", async () => {
    const sent = await runCli(server, ["send", "history-room", "hello there", "--user", "alice"]);
    expect(sent.stderr).toBe("");
    expect(sent.code).toBe(0);
    expect(sent.stdout).toMatch(/^\[history-room #1 \d\d:\d\d:\d\d\] sent, id [0-9a-f-]{36}\n$/);

    await runCli(server, ["send", "history-room", "second", "-u", "bob"]);
    const history = await runCli(server, ["history", "history-room"]);
    expect(history.code).toBe(0);
    const lines = history.stdout.trim().split("\n");
    expect(lines.map((l) => LINE.exec(l)?.groups)).toEqual([
      { room: "history-room", offset: "1", rest: "alice: hello there" },
      { room: "history-room", offset: "2", rest: "bob: second" },
    ]);

    const after = await runCli(server, ["history", "history-room", "--after", "1", "--limit", "5"]);
    expect(after.stdout).toMatch(/#2 .*bob: second\n$/);
    expect(after.stdout).not.toContain("alice");
  });

  it("send --id is idempotent: a retry returns the original offset", async () => {
    const args = ["--json", "send", "idem-room", "once", "-u", "a", "--id", "retry-1"];
    const first = await runCli(server, args);
    const retry = await runCli(server, args);
    expect(JSON.parse(first.stdout)).toMatchObject({ duplicate: false });
    expect(JSON.parse(retry.stdout)).toEqual({ ...JSON.parse(first.stdout), duplicate: true });
    const history = await runCli(server, ["--json", "history", "idem-room"]);
    expect(JSON.parse(history.stdout)).toMatchObject({ lastOffset: "1" });
  });

  it("send says when a retry was already stored, and refuses a reused --id", async () => {
    await runCli(server, ["send", "dup-room", "first", "-u", "alice"]);
    const args = ["send", "dup-room", "hello", "-u", "alice", "--id", "k1"];
    const sent = await runCli(server, args);
    expect(sent.stdout).toMatch(/^\[dup-room #2 \d\d:\d\d:\d\d\] sent, id /);
    const again = await runCli(server, args);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(
      /^\[dup-room #2 \d\d:\d\d:\d\d\] already stored as #2, id [0-9a-f-]{36}\n$/,
    );

    const reused = await runCli(server, ["send", "dup-room", "other", "-u", "alice", "--id", "k1"]);
    expect(reused.code).not.toBe(0);
    expect(reused.stderr).toContain(
      'client_message_id "k1" was already used in room dup-room for a different message ' +
        "(#2 by alice); use a new key for a new message",
    );
  });

  it("metrics and logs stream until Ctrl-C, then exit 0", async () => {
    const metrics = startCli(server, ["metrics", "--interval", "1"]);
    const logs = startCli(server, ["logs", "--backlog", "50"]);
    await Promise.all([
      // Not a terminal: one plain line per metric.
      metrics.waitFor(/^\S+Z cpu_usage\{instance="127\.0\.0\.1:\d+",/m),
      logs.waitFor(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}switchboard listening/m),
    ]);
    const [m, l] = await Promise.all([metrics.stop("SIGINT"), logs.stop("SIGINT")]);
    expect([m.code, m.stderr]).toEqual([0, ""]);
    expect([l.code, l.stderr]).toEqual([0, ""]);
  });

  it("logs prints an RPC's access line readably: method, code, duration, user, reason; --json keeps the entry", async () => {
    // A call the server refuses, then its access line as `logs` shows it (the server runs open:
    // no user). Content over MAX_CONTENT_BYTES: a setting of the server, so the CLI's own check of
    // the schema's rules lets it through (a bad room name would be refused before any call).
    const refused = await runCli(server, ["send", "logs-room", "x".repeat(5000), "-u", "u"]);
    expect(refused.code).not.toBe(0);
    const logs = startCli(server, ["logs", "--backlog", "200"]);
    const readable =
      /^\d\d:\d\d:\d\d\.\d{3} INFO {2}SendMessage InvalidArgument [\d.]+ ms error="[^"]+" service=chat\.ChatService instance=\S+ protocol=connect peer=127\.0\.0\.1:\d+ requestId=\S+$/m;
    await logs.waitFor(readable);
    const done = await logs.stop("SIGINT");
    expect(done.code).toBe(0);
    // No JSON object on the line: fields are key=value.
    expect(readable.exec(logs.stdout)?.[0]).not.toMatch(/\{"/);

    const json = startCli(server, ["--json", "logs", "--backlog", "200"]);
    await json.waitFor(/"code":"InvalidArgument"/);
    await json.stop("SIGINT");
    const entry = JSON.parse(
      json.stdout.split("\n").find((l) => l.includes('"code":"InvalidArgument"')) as string,
    ) as { message: string; fields: Record<string, unknown> };
    expect(entry.message).toBe("rpc");
    expect(entry.fields).toMatchObject({
      method: "/chat.ChatService/SendMessage",
      code: "InvalidArgument",
      durationMs: expect.any(Number),
      error: expect.any(String),
    });
  });

  it("--json prints one protobuf JSON object per line", async () => {
    const sent = await runCli(server, ["--json", "send", "json-room", "{not json}", "-u", "j"]);
    expect(sent.code).toBe(0);
    const response = JSON.parse(sent.stdout) as { offset: string; messageId: string };
    expect(response.offset).toBe("1");
    expect(response.messageId).toMatch(/^[0-9a-f-]{36}$/);

    const history = await runCli(server, ["history", "json-room", "--json"]);
    const lines = history.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const page = JSON.parse(lines[0] as string) as {
      messages: Array<{ content: string; type: string; offset: string }>;
      lastOffset: string;
      hasMore: boolean;
    };
    expect(page.messages).toEqual([
      expect.objectContaining({ content: "{not json}", type: "CHAT", offset: "1" }),
    ]);
    expect(page).toMatchObject({ lastOffset: "1", hasMore: false });
  });

  it("subscribe prints what another CLI process sends; rooms and members see the subscriber", async () => {
    const subscriber = startCli(server, ["subscribe", "lobby", "--user", "carol"]);
    try {
      await subscriber.waitFor(/^live$/m, "stderr");
      await subscriber.waitFor(/\*\*\* System: Welcome to room lobby, carol!/);

      const [sent, members, rooms] = await Promise.all([
        runCli(server, ["send", "lobby", "hi carol", "-u", "dave"]),
        runCli(server, ["members", "lobby"]),
        runCli(server, ["--json", "rooms"]),
      ]);
      expect(sent.code).toBe(0);
      expect(members.stdout).toMatch(/^USER\s+CONNECTIONS\s+JOINED\ncarol\s+1\s+\d{4}-\d\d-\d\d /);
      const lobby = (
        JSON.parse(rooms.stdout) as { rooms: Array<{ name: string; subscriberCount: number }> }
      ).rooms.find((r) => r.name === "lobby");
      expect(lobby?.subscriberCount).toBe(1);

      await subscriber.waitFor(/dave: hi carol/);
    } finally {
      const result = await subscriber.stop("SIGINT");
      // Ctrl-C is how a user ends a subscription: a clean exit.
      expect(result.code).toBe(0);
      expect(result.stderr).not.toContain("error");
      const lines = result.stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^\[lobby \d\d:\d\d:\d\d\] \*\*\* System: Welcome/);
      expect(lines.slice(1).map((l) => LINE.exec(l)?.groups?.rest)).toEqual([
        "--> carol joined",
        "dave: hi carol",
      ]);
    }
  });

  it("subscribe --watch-only follows the room without joining it: not a member, no JOIN or LEAVE", async () => {
    const watcher = startCli(server, [
      "subscribe",
      "watch-room",
      "--user",
      "olive",
      "--watch-only",
    ]);
    try {
      await watcher.waitFor(/^live$/m, "stderr");
      await runCli(server, ["send", "watch-room", "hi watchers", "-u", "dave"]);
      await watcher.waitFor(/dave: hi watchers/);
      const members = await runCli(server, ["members", "watch-room"]);
      expect(members.stdout).not.toMatch(/olive/);
    } finally {
      const result = await watcher.stop("SIGINT");
      expect(result.code).toBe(0);
      const lines = result.stdout.trim().split("\n");
      expect(lines.slice(1).map((l) => LINE.exec(l)?.groups?.rest)).toEqual(["dave: hi watchers"]);
    }
    const history = await runCli(server, ["history", "watch-room"]);
    expect(history.stdout).not.toMatch(/olive/);
  });

  it("upload streams a JSON Lines file and reports what it stored and what was already there", async () => {
    const file = join(dir, "three.jsonl");
    writeFileSync(
      file,
      [
        '{"room":"upload-room","user":"u","content":"one"}',
        '{"room":"upload-room","user":"u","content":"two","clientMessageId":"k-2"}',
        "",
        '{"room":"upload-room","user":"u","content":"three"}',
      ].join("\n"),
    );
    const result = await runCli(server, ["upload", file]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("uploaded 3 messages: 3 stored; last stored: upload-room #3\n");

    // From stdin too, with the same idempotency key: nothing new is stored for it.
    const again = await runCli(server, ["upload", "-"], {
      input: '{"room":"upload-room","user":"u","content":"two","clientMessageId":"k-2"}\n',
    });
    expect(again.stdout).toBe(
      "uploaded 1 message: 0 stored, 1 already stored (same clientMessageId)\n",
    );

    // The whole file again: the keyed line is an idempotent hit, the others are new.
    const twice = await runCli(server, ["upload", file]);
    expect(twice.stdout).toBe(
      "uploaded 3 messages: 2 stored, 1 already stored (same clientMessageId); last stored: upload-room #5\n",
    );
  });

  it("upload refused at line 2 says line 1 was stored and how to resume; resuming stores each line once", async () => {
    const file = join(dir, "refused.jsonl");
    const lines = [
      '{"room":"resume-room","user":"u","content":"one","clientMessageId":"r-1"}',
      '{"room":"resume-room","user":"u","content":""}',
      '{"room":"resume-room","user":"u","content":"three","clientMessageId":"r-3"}',
    ];
    writeFileSync(file, `${lines.join("\n")}\n`);
    const refused = await runCli(server, ["upload", file]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toBe(
      [
        "upload stopped at line 2; before it: 1 stored; last stored: resume-room #1",
        `fix line 2, then resume with: switchboard upload ${file} --from-line 2`,
        "error: invalid_argument: line 2: content: value is required [required]",
        "",
      ].join("\n"),
    );

    lines[1] = '{"room":"resume-room","user":"u","content":"two","clientMessageId":"r-2"}';
    writeFileSync(file, `${lines.join("\n")}\n`);
    const resumed = await runCli(server, ["upload", file, "--from-line", "2"]);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toBe("uploaded 2 messages: 2 stored; last stored: resume-room #3\n");
    // Resuming from the start instead is safe too: every line has a key.
    const again = await runCli(server, ["upload", file]);
    expect(again.stdout).toBe(
      "uploaded 3 messages: 0 stored, 3 already stored (same clientMessageId)\n",
    );
    const history = await runCli(server, ["--json", "history", "resume-room"]);
    const page = JSON.parse(history.stdout) as { messages: Array<{ content: string }> };
    expect(page.messages.map((m) => m.content)).toEqual(["one", "two", "three"]);
  });

  it("upload from stdin that breaks at line 2 says what line 1 did", async () => {
    const result = await runCli(server, ["upload", "-"], {
      input: '{"room":"stdin-bad","user":"u","content":"kept","clientMessageId":"s-1"}\n{oops\n',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^upload stopped at line 2; before it: [01] stored[^\n]*\nfix line 2, then resume with the input from line 2 on \(tail -n \+2 FILE \| switchboard upload -\)\nerror: line 2: invalid JSON/,
    );
  });

  it("upload stops at a bad line, names it, exits 1 and stores nothing from the file", async () => {
    const file = join(dir, "bad.jsonl");
    writeFileSync(
      file,
      '{"room":"bad-upload","user":"u","content":"fine"}\n{"room":"bad-upload", oops}\n',
    );
    const result = await runCli(server, ["upload", file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: line 2: invalid JSON/);
    const history = await runCli(server, ["--json", "history", "bad-upload"]);
    expect(JSON.parse(history.stdout)).toMatchObject({ messages: [], lastOffset: "0" });
  });

  it("a bad room fails with the RPC's code and exit 1; a usage error exits 2", async () => {
    const badRoomError =
      "error: invalid_argument: room: does not match regex pattern `^[A-Za-z0-9._-]{1,64}$` [string.pattern]\n";
    const [badRoom, badRoomNoServer, missingUser, badProtocol] = await Promise.all([
      runCli(server, ["send", "no spaces!", "x", "-u", "a"]),
      // The CLI checks the contract's rules itself (protovalidate, from the generated
      // descriptors) before sending: the same answer with no server listening at all.
      runCli({ url: `http://127.0.0.1:${await freePort()}` }, [
        "send",
        "no spaces!",
        "x",
        "-u",
        "a",
      ]),
      runCli(server, ["send", "room", "x"]),
      runCli(server, ["--protocol", "smoke-signals", "rooms"]),
    ]);
    expect(badRoom.code).toBe(1);
    expect(badRoom.stderr).toBe(badRoomError);
    expect([badRoomNoServer.code, badRoomNoServer.stderr]).toEqual([1, badRoomError]);

    expect(missingUser.code).toBe(2);
    expect(missingUser.stderr).toContain("--user");
    expect(badProtocol.code).toBe(2);
    expect(badProtocol.stderr).toContain("smoke-signals");
  });

  it.each([
    ["connect", []],
    ["connect", ["--http2"]],
    ["grpc", []],
    ["grpcweb", []],
    ["grpcweb", ["--http2"]],
  ])("speaks %s %j: send, then history over the same protocol", async (protocol, extra) => {
    const room = `proto-${protocol}-${extra.length}`;
    const flags = ["--protocol", protocol, ...extra];
    const sent = await runCli(server, [...flags, "send", room, `via ${protocol}`, "-u", "p"]);
    expect(sent.stderr).toBe("");
    expect(sent.stdout).toMatch(new RegExp(`^\\[${room} #1 `));
    const history = await runCli(server, [...flags, "history", room]);
    expect(history.stdout).toContain(`p: via ${protocol}`);
  });

  it.each(["connect", "grpc", "grpcweb"])(
    "chat over %s shows the room, sends stdin lines, shows each once and exits 0 at EOF",
    async (protocol) => {
      const room = `chat-${protocol}`;
      await runCli(server, ["send", room, "already here", "-u", "zed"]);
      const result = await runCli(server, ["--protocol", protocol, "chat", room, "-u", "eve"], {
        input: "first\n\nsecond\n",
      });
      expect(result.code).toBe(0);
      expect(result.stderr).toBe(
        `connected as eve to room ${room} at ${server.url} (${protocol})\n`,
      );
      expect(
        result.stdout
          .trim()
          .split("\n")
          .map((l) => LINE.exec(l)?.groups),
      ).toEqual([
        { room, offset: "1", rest: "zed: already here" },
        { room, offset: "2", rest: "--> eve joined" },
        { room, offset: "3", rest: "eve: first" },
        { room, offset: "4", rest: "eve: second" },
      ]);
    },
  );

  it("chat reports a line the server refuses and exits 1, after sending the others", async () => {
    const long = "x".repeat(5000);
    const result = await runCli(server, ["chat", "chat-refused", "-u", "eve"], {
      input: `ok\n${long}\nalso ok\n`,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`not sent: "${long}": invalid_argument: content`);
    expect(result.stderr).toMatch(/^error: 1 line was not sent$/m);
    expect(result.stdout).toMatch(/eve: ok\n.*eve: also ok\n$/);
  });
});

describe("switchboard subscribe across a server restart", () => {
  it("reconnects, resumes after the last offset, and misses nothing sent while it was away", async () => {
    // SQLite, so the room's history and offsets survive the restart.
    const server = await ServerProcess.start("sqlite");
    const subscriber = startCli(server, ["subscribe", "durable", "-u", "sam", "--since", "0"]);
    try {
      await subscriber.waitFor(/^live$/m, "stderr");
      await runCli(server, ["send", "durable", "before", "-u", "a"]);
      await subscriber.waitFor(/a: before/);

      await server.stop();
      await subscriber.waitFor(
        /^reconnecting… \(attempt 1, next try in [\d.]+ s\): server shutting down$/m,
        "stderr",
      );
      await server.restart();
      await runCli(server, ["send", "durable", "after", "-u", "a"]);
      await subscriber.waitFor(/a: after/);
    } finally {
      const result = await subscriber.stop("SIGINT");
      await server.close();
      expect(result.code).toBe(0);
      expect(result.stderr.match(/^live$/gm)).toHaveLength(2);
      const offsets = result.stdout
        .trim()
        .split("\n")
        .map((l) => LINE.exec(l)?.groups?.offset)
        .filter((o) => o !== undefined)
        .map(Number);
      // Every stored message once, in order: JOIN, before, LEAVE at shutdown, after, JOIN again.
      expect(offsets).toEqual(offsets.map((_, i) => i + 1));
      expect(result.stdout).toMatch(/a: before[\s\S]*a: after/);
      expect(result.stdout.match(/Welcome/g)).toHaveLength(1);
    }
  });
});
