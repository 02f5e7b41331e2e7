// Makes dist/ self-contained: the generated schema (@switchboard/proto's code, compiled into
// dist/gen/ by the build script before this runs) is imported by relative path instead of by
// package name, so the packed @switchboard/client needs no @switchboard/proto and npm never looks
// that name up on a registry. Run by `build` (package.json), after both tsc runs.
//
// tsc leaves bare specifiers as written, so this rewrites them in dist's .js and .d.ts files:
// "@switchboard/proto/gen/chat/chat_pb" becomes "./gen/chat/chat_pb.js" (relative to the file).
// It fails the build when a reference it cannot rewrite is left.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const dist = fileURLToPath(new URL("../dist", import.meta.url));
const SPECIFIER = /(["'])@switchboard\/proto\/gen\/([\w/.-]+)\1/g;

let rewritten = 0;
for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !/\.(js|d\.ts)$/.test(entry.name)) continue;
  const file = join(entry.parentPath, entry.name);
  const text = readFileSync(file, "utf8");
  const next = text.replace(SPECIFIER, (_match, quote: string, module: string) => {
    rewritten++;
    const target = relative(dirname(file), join(dist, "gen", `${module}.js`));
    return `${quote}${target.startsWith(".") ? target : `./${target}`}${quote}`;
  });
  if (/["']@switchboard\/proto/.test(next)) {
    throw new Error(`${relative(dist, file)} still names @switchboard/proto after the rewrite`);
  }
  if (next !== text) writeFileSync(file, next);
}
if (rewritten === 0) throw new Error("no @switchboard/proto import found in dist: nothing bundled");
console.log(`bundle-proto: ${rewritten} imports of @switchboard/proto now point into dist/gen`);
