// `pnpm docs:config`: writes README.md's configuration table and `.env.example` from the settings
// spec (src/settings.ts); `--check` writes nothing and exits 1 when either is out of date.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { envExample, withSettingsTable } from "../src/settings-docs.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const check = process.argv.includes("--check");
const files: Array<[string, (current: string) => string]> = [
  [join(root, "README.md"), withSettingsTable],
  [join(root, ".env.example"), () => envExample()],
];
let stale = 0;
for (const [path, render] of files) {
  let current = "";
  try {
    current = readFileSync(path, "utf8");
  } catch {}
  const wanted = render(current);
  if (wanted === current) continue;
  stale++;
  if (check) process.stderr.write(`${path} is out of date: run pnpm docs:config\n`);
  else {
    writeFileSync(path, wanted);
    process.stderr.write(`wrote ${path}\n`);
  }
}
if (check && stale > 0) process.exit(1);
