// README.md's configuration table and .env.example are generated from SETTINGS; this fails when
// either was edited by hand or a setting changed without `pnpm docs:config`.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { type AnySetting, flagOf, SETTINGS } from "./settings.js";
import { envExample, settingsTable, TABLE_BEGIN, TABLE_END } from "./settings-docs.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const settings = Object.values(SETTINGS) as AnySetting[];

/** The README's table rows between the markers, by variable: [flag, default, meaning]. */
function readmeRows(): Map<string, string[]> {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const begin = readme.indexOf(TABLE_BEGIN);
  const end = readme.indexOf(TABLE_END);
  expect(begin, "README.md lacks the generated table's markers").toBeGreaterThanOrEqual(0);
  expect(end).toBeGreaterThan(begin);
  const rows = new Map<string, string[]>();
  for (const line of readme.slice(begin + TABLE_BEGIN.length, end).split("\n")) {
    const cells = line.split(/(?<!\\)\|/).slice(1, -1);
    const name = cells[0]?.trim().replace(/^`(.*)`$/, "$1");
    if (name === undefined || name === "variable" || name.startsWith("---")) continue;
    rows.set(
      name,
      cells.slice(1).map((c) => c.trim()),
    );
  }
  return rows;
}

describe("generated configuration docs", () => {
  it("README.md's table is exactly the one SETTINGS renders (run pnpm docs:config)", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const begin = readme.indexOf(TABLE_BEGIN) + TABLE_BEGIN.length;
    expect(readme.slice(begin, readme.indexOf(TABLE_END)).trim()).toBe(settingsTable());
  });

  it("README.md has one row per setting, with its flag, default and doc line", () => {
    const rows = readmeRows();
    expect([...rows.keys()]).toEqual(settings.map((s) => s.env));
    for (const s of settings) {
      const [flag, , meaning] = rows.get(s.env) as string[];
      expect(flag).toBe(`\`${flagOf(s)}\``);
      expect(meaning).toBe(s.doc);
    }
    expect(rows.get("PORT")?.[1]).toBe("`8080`");
    expect(rows.get("TLS_CERT")?.[1]).toBe("unset");
  });

  it(".env.example is exactly the one SETTINGS renders (run pnpm docs:config)", () => {
    const file = readFileSync(join(root, ".env.example"), "utf8");
    expect(file).toBe(envExample());
    for (const s of settings) expect(file).toMatch(new RegExp(`^# ${s.env}=`, "m"));
    expect(file).toContain("# PORT=8080\n");
    expect(file).toContain("# STORE=sqlite\n");
  });
});
