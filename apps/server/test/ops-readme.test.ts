// Runs the README's "Operating Switchboard" commands in order against a server started with the
// section's own `… pnpm start` line, and matches their output with what the README shows, so the
// operator's guide cannot drift from the server. The Health/Watch example is the shutdown one:
// the test sends SIGTERM once the watch has printed its first answer.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_DIR, ServerProcess } from "./harness.js";
import { skipWithout } from "./tools.js";

interface Example {
  command: string;
  /** The output the README shows; undefined when no output block follows. */
  expected: string[] | undefined;
}

/**
 * The README's "Operating Switchboard" section (a heading of any level), up to the next heading of
 * its level or above.
 */
export function operatingSection(markdown: string): string {
  const lines = markdown.split("\n");
  let level = 0;
  let inFence = false;
  const section: string[] = [];
  for (const line of lines) {
    if (line.startsWith("```")) inFence = !inFence;
    const heading = inFence ? null : /^(#+) (.*)$/.exec(line);
    if (level === 0) {
      if (heading?.[2] === "Operating Switchboard") level = (heading[1] as string).length;
      else continue;
    } else if (heading && (heading[1] as string).length <= level) break;
    section.push(line);
  }
  if (level === 0) throw new Error("README has no Operating Switchboard section");
  return section.join("\n");
}

/** Every ```sh block of the section, with the ```text block right after it (its output). */
export function examples(section: string): Example[] {
  const blocks = [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({
    lang: m[1],
    body: m[2] as string,
  }));
  const out: Example[] = [];
  blocks.forEach((block, i) => {
    if (block.lang !== "sh") return;
    const next = blocks[i + 1];
    out.push({
      command: block.body,
      expected: next?.lang === "text" ? next.body.split("\n").filter((l) => l !== "") : undefined,
    });
  });
  return out;
}

/** `…` stands for any text; everything else must match exactly. */
function pattern(line: string): RegExp {
  const parts = line.split("…").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join(".*")}$`);
}

/** Runs `command` in bash from the repository root; stdout and stderr as one stream, in order. */
function runShell(
  command: string,
  onOutput?: (soFar: string) => void,
): Promise<{ output: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-uo", "pipefail", "-c", `{ ${command}\n} 2>&1`], {
      cwd: REPO_DIR,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      output += chunk;
      onOutput?.(output);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ output, code });
    });
  });
}

const section = operatingSection(readFileSync(join(REPO_DIR, "README.md"), "utf8"));
const all = examples(section);
// The first block starts the server: `VAR=value … pnpm start`.
const startLine = all[0]?.command.trim() ?? "";
const commands = all.slice(1);

describe.skipIf(skipWithout("curl"))("README: Operating Switchboard", () => {
  let server: ServerProcess;
  const rewrite = (command: string) =>
    command.replaceAll("localhost:8080", `127.0.0.1:${server.port}`);

  beforeAll(async () => {
    const m = /^((?:[A-Z_]+=\S+ )+)pnpm start$/.exec(startLine);
    if (m === null)
      throw new Error(`the section must start with "VAR=value … pnpm start": ${startLine}`);
    const env = Object.fromEntries(
      (m[1] as string)
        .trim()
        .split(" ")
        .map((kv) => kv.split("=") as [string, string]),
    );
    server = await ServerProcess.start({ store: "memory", env });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("covers health, reflection, auth, limits, metrics, logs and shutdown", () => {
    for (const heading of [
      "Health",
      "Reflection",
      "Authentication",
      "Limits",
      "Metrics",
      "Logs",
      "Shutdown",
    ]) {
      expect(section).toMatch(new RegExp(`\\n#+ ${heading}\\n`));
    }
    expect(commands.length).toBeGreaterThanOrEqual(8);
    expect(commands.every((c) => c.expected !== undefined)).toBe(true);
  });

  // In order: later examples rely on what earlier ones did (offsets, counters, the last log line).
  it.each(commands.map((e, i) => [i + 1, e] as const))(
    "example %i prints what the README shows",
    async (_n, example) => {
      const shutdown = example.command.includes("grpc.health.v1.Health/Watch");
      let killed: Promise<unknown> | undefined;
      const { output } = await runShell(rewrite(example.command), (soFar) => {
        if (shutdown && killed === undefined && soFar.includes('"SERVING"')) {
          killed = server.kill("SIGTERM");
        }
      });
      const lines = output.split("\n").filter((l) => l.trim() !== "");
      const expected = example.expected ?? [];
      expect(lines.length, output).toBe(expected.length);
      expected.forEach((want, i) => {
        expect(lines[i], output).toMatch(pattern(want));
      });
      if (shutdown) {
        expect(killed).toBeDefined();
        await expect(killed).resolves.toEqual({ code: 0, signal: null });
      }
    },
  );
});
