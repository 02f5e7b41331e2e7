// The CLI against a server with authentication on: `switchboard token` mints a token from
// AUTH_JWT_SECRET, and every command sends it from --token or SWITCHBOARD_TOKEN.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerProcess } from "../../server/test/harness.js";
import { startCli } from "./harness.js";

const run = promisify(execFile);
const CLI_BIN = fileURLToPath(new URL("../bin/switchboard.js", import.meta.url));
const SECRET = "cli-auth-test-secret-0123456789";

/** Runs `switchboard ARGS`; resolves with its exit code and output, whatever the code. */
async function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI_BIN, ...args], {
      env: { ...process.env, ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("switchboard with authentication", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start({ store: "memory", env: { AUTH_JWT_SECRET: SECRET } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("mints a token that --token and SWITCHBOARD_TOKEN send; the server stores its sub", async () => {
    const minted = await cli(["token", "--sub", "alice", "--rooms", "team-*"], {
      AUTH_JWT_SECRET: SECRET,
    });
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);

    const url = ["--url", server.baseUrl];
    const viaFlag = await cli([
      ...url,
      "--token",
      token,
      "send",
      "team-cli",
      "hi",
      "-u",
      "mallory",
    ]);
    expect(viaFlag.code).toBe(0);
    const viaEnv = await cli([...url, "--json", "history", "team-cli"], {
      SWITCHBOARD_TOKEN: token,
    });
    expect(viaEnv.code).toBe(0);
    expect(JSON.parse(viaEnv.stdout)).toMatchObject({
      messages: [{ user: "alice", content: "hi" }],
    });

    const forbidden = await cli([...url, "--token", token, "send", "general", "hi", "-u", "a"]);
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toContain("permission_denied");
    const anonymous = await cli([...url, "send", "team-cli", "hi", "-u", "a"]);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toContain("unauthenticated");
  });

  it("--roles admin mints a token that reads logs and metrics; a room-scoped one is refused naming the role", async () => {
    const mint = async (args: string[]) => {
      const minted = await cli(["token", "--sub", "alice", ...args], { AUTH_JWT_SECRET: SECRET });
      expect(minted.code, minted.stderr).toBe(0);
      return minted.stdout.trim();
    };
    const url = ["--url", server.baseUrl];
    const scoped = await mint(["--rooms", "team-*"]);
    for (const command of [
      ["logs", "--backlog", "1"],
      ["metrics", "--interval", "1"],
    ]) {
      const refused = await cli([...url, "--token", scoped, ...command]);
      expect(refused.code, refused.stderr).toBe(1);
      expect(refused.stderr).toMatch(
        /^error: permission_denied: chat\.(LogService\/StreamLogs|ChatService\/StreamMetrics) needs the admin role: the token of alice has no "admin" in its roles claim\n$/,
      );
    }
    const admin = await mint(["--roles", "admin"]);
    // `logs` and `metrics` follow their stream until Ctrl-C: stop each once it printed.
    for (const [command, first] of [
      [["logs", "--backlog", "1"], /"message":/],
      [["metrics", "--interval", "1"], /"name":"cpu_usage"/],
    ] as const) {
      const follower = startCli({ url: server.baseUrl }, ["--token", admin, "--json", ...command]);
      await follower.waitFor(first, "stdout", 30_000);
      const result = await follower.stop("SIGINT");
      expect(result, command[0]).toMatchObject({ code: 0, stderr: "" });
    }
  });

  it("refuses to mint without the secret (usage error, exit 2)", async () => {
    const result = await cli(["token", "--sub", "alice"], { AUTH_JWT_SECRET: "" });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("AUTH_JWT_SECRET");
  });
});
