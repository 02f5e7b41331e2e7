// The README as a map: its Contents lists every heading below the title, in order, with the
// anchor GitHub gives it, and no bullet runs on for more than a few lines.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_DIR } from "./harness.js";

const readme = readFileSync(join(REPO_DIR, "README.md"), "utf8");

/** Markdown lines outside fenced code blocks, with their 1-based line numbers. */
function prose(markdown: string): { line: string; n: number }[] {
  let inFence = false;
  const out: { line: string; n: number }[] = [];
  markdown.split("\n").forEach((line, i) => {
    if (line.startsWith("```")) inFence = !inFence;
    else if (!inFence) out.push({ line, n: i + 1 });
  });
  return out;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\- ]/gu, "")
    .replaceAll(" ", "-");
}

describe("README as a map", () => {
  const lines = prose(readme);
  const headings = lines
    .map(({ line }) => /^(#{2,4}) (.+)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null && m[2] !== "Contents")
    .map((m) => ({ depth: (m[1] as string).length - 2, text: m[2] as string }));

  it("lists every heading in its Contents, in order, nested by level, with working anchors", () => {
    const start = readme.indexOf("\n## Contents\n");
    expect(start).toBeGreaterThan(0);
    const contents = readme
      .slice(start)
      .split("\n## ")[1]
      ?.split("\n")
      .filter((l) => /^ *- \[/.test(l));
    expect(contents).toEqual(
      headings.map((h) => `${"  ".repeat(h.depth)}- [${h.text}](#${anchor(h.text)})`),
    );
  });

  it("has the quick start, then how to use it, then how to operate it, then the reference", () => {
    const parts = headings.filter((h) => h.depth === 0).map((h) => h.text);
    expect(parts).toEqual(["Quick start", "Use it from your code", "Operate it", "Reference"]);
  });

  it("every in-page link points at a heading", () => {
    const anchors = new Set(headings.map((h) => anchor(h.text)));
    const links = [...readme.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1] as string);
    expect(links.filter((a) => !anchors.has(a))).toEqual([]);
  });

  it("keeps bullets to a few lines (at most 7)", () => {
    const long: string[] = [];
    let bullet: { n: number; lines: number } | undefined;
    for (const { line, n } of [...lines, { line: "", n: 0 }]) {
      if (/^ *- /.test(line)) {
        if (bullet && bullet.lines > 7) long.push(`line ${bullet.n}: ${bullet.lines} lines`);
        bullet = { n, lines: 1 };
      } else if (bullet && /^ +\S/.test(line)) bullet.lines++;
      else {
        if (bullet && bullet.lines > 7) long.push(`line ${bullet.n}: ${bullet.lines} lines`);
        bullet = undefined;
      }
    }
    expect(long).toEqual([]);
  });
});
