// Runs the README's curl examples verbatim against a fresh server and matches their output with
// the output the README shows, so the README cannot drift from the server.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_DIR, ServerProcess } from "./harness.js";
import { skipWithout } from "./tools.js";

const run = promisify(execFile);

interface Example {
  command: string;
  expected: string[];
}

/** Every ```sh block that calls curl, paired with the ```json block right after it. */
export function curlExamples(markdown: string): Example[] {
  const blocks = [...markdown.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({
    lang: m[1],
    body: m[2] as string,
  }));
  const examples: Example[] = [];
  blocks.forEach((block, i) => {
    const next = blocks[i + 1];
    if (block.lang !== "sh" || !block.body.includes("curl ") || next?.lang !== "json") return;
    examples.push({ command: block.body, expected: next.body.split("\n").filter((l) => l !== "") });
  });
  return examples;
}

/** `…` in the README stands for any text; everything else must match exactly. */
function pattern(line: string): RegExp {
  const parts = line.split("…").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join(".*")}$`);
}

const readme = readFileSync(join(REPO_DIR, "README.md"), "utf8");
const examples = curlExamples(readme);

describe.skipIf(skipWithout("curl"))("README curl examples", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await ServerProcess.start({ store: "memory" });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("finds the examples (unary calls, a GET URL, a server stream)", () => {
    expect(examples.length).toBeGreaterThanOrEqual(7);
    expect(examples.some((e) => e.command.includes("GetHistory?encoding=json"))).toBe(true);
    expect(examples.some((e) => e.command.includes("application/connect+json"))).toBe(true);
  });

  // In order: later examples rely on the messages earlier ones stored.
  it.each(examples.map((e, i) => [i + 1, e] as const))(
    "example %i prints what the README shows",
    async (_n, example) => {
      const command = example.command.replaceAll("localhost:8080", `127.0.0.1:${server.port}`);
      const { stdout } = await run("bash", ["-euo", "pipefail", "-c", command], {
        timeout: 15_000,
      });
      const lines = stdout.split("\n").filter((l) => l.trim() !== "");
      // Each expected line matches an output line, in order; output lines between are allowed
      // only where they are blank (the envelope prefixes `tr` turns into newlines).
      expect(lines.length).toBe(example.expected.length);
      example.expected.forEach((want, i) => {
        expect(lines[i]).toMatch(pattern(want));
      });
    },
  );
});
