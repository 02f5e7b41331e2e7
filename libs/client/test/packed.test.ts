// @switchboard/client and @switchboard/proto as someone else's project gets them: packed with
// `pnpm pack` (prepack builds dist/: ESM and .d.ts), installed with npm into a fresh Node project
// outside the workspace, and used by a plain `node` program (packed-consumer.mjs) against a real
// server that is killed (kill -9) and restarted while the program's subscription is live.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "../../../apps/server/test/harness.js";

const run = promisify(execFile);
const LIBS = fileURLToPath(new URL("../../", import.meta.url));
const CONSUMER = fileURLToPath(new URL("./packed-consumer.mjs", import.meta.url));

/** The version the workspace builds against, so the project installs the same one. */
function workspaceVersion(name: string): string {
  const manifest = join(LIBS, "client", "node_modules", name, "package.json");
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}

/** `pnpm pack` in libs/<dir> into `destination`; resolves with the tarball's path. */
async function pack(dir: string, destination: string): Promise<string> {
  const { stdout } = await run("pnpm", ["pack", "--pack-destination", destination], {
    cwd: join(LIBS, dir),
    timeout: 120_000,
  });
  const tarball = stdout.trim().split("\n").at(-1) as string;
  expect(tarball).toMatch(/\.tgz$/);
  return tarball;
}

interface Report {
  idempotent: Array<{ messageId: string; offset: string; duplicate?: boolean }>;
  subscription: {
    seen: Array<{ offset: number; content: string }>;
    states: string[];
    afterOffset: number;
  };
  chat: { lines: string[]; acked: number[]; state: { status: string } };
  error: string;
}

describe("the packed packages in a project of their own", () => {
  let project: string;
  let server: ServerProcess;

  beforeAll(async () => {
    project = mkdtempSync(join(tmpdir(), "switchboard-packed-"));
    const [proto, client] = await Promise.all([pack("proto", project), pack("client", project)]);
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "packed-consumer", private: true, type: "module" }),
    );
    // npm, as a newcomer would; the peers (@bufbuild/protobuf, @connectrpc/connect) come with
    // it, pinned here to the workspace's versions. --prefer-offline: npm's cache when it can.
    await run(
      "npm",
      [
        "install",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        "--no-save",
        proto,
        client,
        `@connectrpc/connect-node@${workspaceVersion("@connectrpc/connect-node")}`,
        `@connectrpc/connect@${workspaceVersion("@connectrpc/connect")}`,
        `@bufbuild/protobuf@${workspaceVersion("@bufbuild/protobuf")}`,
      ],
      { cwd: project, timeout: 120_000 },
    );
    copyFileSync(CONSUMER, join(project, "consumer.mjs"));
    server = await startServer({ store: "sqlite" });
  }, 240_000);

  afterAll(async () => {
    await server?.close();
    if (project !== undefined) rmSync(project, { recursive: true, force: true });
  });

  it("ship built ESM with declarations and point there", () => {
    for (const name of ["client", "proto"]) {
      const manifest = JSON.parse(
        readFileSync(join(project, "node_modules", "@switchboard", name, "package.json"), "utf8"),
      ) as { private?: boolean; exports: Record<string, { types: string; import: string }> };
      expect(manifest.private).toBeUndefined();
      for (const entry of Object.values(manifest.exports)) {
        expect(entry.types).toMatch(/^\.\/dist\/.*\.d\.ts$/);
        expect(entry.import).toMatch(/^\.\/dist\/.*\.js$/);
      }
    }
  });

  it("run under plain node: an idempotent send, a subscription across kill -9 and a chat session", async () => {
    const child: ChildProcess = spawn(process.execPath, ["consumer.mjs"], {
      cwd: project,
      env: { ...process.env, SWITCHBOARD_URL: server.baseUrl, ROOM: "packed" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    const restartRequested = new Promise<void>((resolve, reject) => {
      child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk;
        if (stdout.includes("restart me\n")) resolve();
      });
      void exited.then(() => reject(new Error(`the program exited early:\n${stdout}\n${stderr}`)));
    });
    try {
      await restartRequested;
      await server.kill("SIGKILL");
      await server.restart();
      child.stdin?.write("restarted\n");
      expect(await exited).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
    expect(stderr).toBe("");
    const report = JSON.parse(stdout.trim().split("\n").at(-1) as string) as Report;

    // Twice with one key: one message, one offset.
    const [first, second] = report.idempotent;
    // The retry names the stored message, and says it was one (SendMessageResponse.duplicate).
    expect(second).toEqual({ ...first, duplicate: true });
    expect(first?.duplicate).toBeUndefined();

    // Every stored offset once, in order, across the crash, ending with the send after it.
    const { seen, states, afterOffset } = report.subscription;
    expect(seen.map((m) => m.offset)).toEqual(seen.map((_, i) => i + 1));
    expect(seen.at(-1)).toEqual({ offset: afterOffset, content: "after restart" });
    expect(seen.filter((m) => m.content === "exactly once")).toHaveLength(1);
    expect(states).toContain("reconnecting");
    expect(states.filter((s) => s === "live").length).toBeGreaterThanOrEqual(2);

    // The chat session: the backlog, then its own lines, each once; acknowledged before close.
    expect(report.chat.lines).toEqual([
      "1 other: backlog",
      "2 script: script joined",
      "3 script: hello",
      "4 script: world",
    ]);
    expect(report.chat.acked).toEqual([3, 4]);
    expect(report.chat.state).toEqual({ status: "closed" });
    expect(report.error).toBe("invalid_argument");
  }, 120_000);
});
