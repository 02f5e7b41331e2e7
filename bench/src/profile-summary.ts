// Where a server's CPU time went, from a V8 CPU profile (node --cpu-prof): self time by function
// and by package, and inclusive time of chosen frames, in % of the non-idle samples.
//
//   node --import tsx bench/src/profile-summary.ts PROFILE.cpuprofile [--top 25]
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ROOT } from "./lib/servers.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: "string", default: "25" } },
});
const profile = JSON.parse(readFileSync(positionals[0] as string, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Self time per node, µs.
const self = new Map<number, number>();
profile.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const idle = [...self].filter(([id]) => byId.get(id)?.callFrame.functionName === "(idle)");
const total = [...self.values()].reduce((a, b) => a + b, 0) - idle.reduce((a, [, t]) => a + t, 0);

const where = (n: ProfileNode) => {
  const url = n.callFrame.url;
  const pkg = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg !== undefined) return pkg;
  if (url.startsWith("node:")) return "node core";
  if (url.includes("/apps/server/")) return "switchboard (apps/server)";
  if (url === "") return n.callFrame.functionName; // (garbage collector), (program)
  return repoPath(url);
};
// Source URLs relative to the repository (file:// URLs, or plain paths).
const rootUrl = `${pathToFileURL(ROOT).href}/`;
const repoPath = (url: string) => url.replace(rootUrl, "").replace(`${ROOT}/`, "");
const label = (n: ProfileNode) =>
  `${n.callFrame.functionName || "(anonymous)"}  ${repoPath(n.callFrame.url).replace(/^.*\/node_modules\/\.pnpm\/[^/]+\/node_modules\//, "")}:${n.callFrame.lineNumber + 1}`;

const pct = (t: number) => `${((t / total) * 100).toFixed(1).padStart(5)}%`;
const top = Number(args.top);

const byPackage = new Map<string, number>();
const byFunction = new Map<string, number>();
for (const [id, t] of self) {
  const n = byId.get(id) as ProfileNode;
  if (n.callFrame.functionName === "(idle)") continue;
  byPackage.set(where(n), (byPackage.get(where(n)) ?? 0) + t);
  byFunction.set(label(n), (byFunction.get(label(n)) ?? 0) + t);
}
console.log(`busy time ${(total / 1e6).toFixed(1)} s (idle excluded)\n\nself time by package:`);
for (const [k, t] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`${pct(t)}  ${k}`);
console.log("\nself time by function:");
for (const [k, t] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`${pct(t)}  ${k}`);

// Inclusive time of frames whose name says "async generator" work, per source file: a sample
// counts once for a file however many of its frames are on the stack.
const inclusive = new Map<string, number>();
for (const [id, t] of self) {
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const n = byId.get(cur) as ProfileNode;
    const file = n.callFrame.url.replace(
      /^.*\/(node_modules\/\.pnpm\/[^/]+\/node_modules\/|work\/main\/)/,
      "",
    );
    if (file !== "" && !seen.has(file)) {
      seen.add(file);
      inclusive.set(file, (inclusive.get(file) ?? 0) + t);
    }
  }
}
console.log("\ninclusive time by source file (on the stack):");
for (const [k, t] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`${pct(t)}  ${k}`);
