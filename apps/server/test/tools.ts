// The programs the tests run besides Node (a real Redis, Chromium, nginx, gRPC C-core, …): where
// each is, and what a suite does when one is missing. The one place every suite asks "is tool X
// here": under CI (`CI=true`) a missing tool fails the suite with a test that names the package
// to install, so a machine without it cannot report green; elsewhere the suite is skipped with a
// line on stderr that says the same.
import { execFileSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { it } from "vitest";
import { REPO_DIR } from "./harness.js";

interface ToolInfo {
  /** What installs it (`.ci/run` installs every Debian package named here). */
  install: string;
  /** The program to run, or undefined when the machine lacks it. */
  locate(): string | undefined;
}

/** Every tool a test needs, by the name the suites use. */
const TOOLS = {
  "redis-server": { install: "apt-get install redis-server", locate: () => onPath("redis-server") },
  "redis-cli": { install: "apt-get install redis-tools", locate: () => onPath("redis-cli") },
  chromium: {
    install: "apt-get install chromium",
    locate: () => executable(process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"),
  },
  "python3-grpcio": {
    install: "apt-get install python3-grpcio python3-protobuf",
    locate: pythonWithGrpc,
  },
  nginx: {
    install: "apt-get install nginx-light",
    locate: () => onPath("nginx") ?? executable("/usr/sbin/nginx"),
  },
  openssl: { install: "apt-get install openssl", locate: () => onPath("openssl") },
  curl: { install: "apt-get install curl", locate: () => onPath("curl") },
  buf: {
    install: "pnpm install (the @bufbuild/buf devDependency)",
    locate: () => executable(join(REPO_DIR, "node_modules", ".bin", "buf")),
  },
} satisfies Record<string, ToolInfo>;

/** A program a test runs: `redis-server`, `chromium`, `python3-grpcio` (a python3 with it), … */
export type Tool = keyof typeof TOOLS;

const located = new Map<Tool, string | undefined>();

/** The path of `tool`, or undefined when the machine lacks it (looked up once per process). */
export function locateTool(tool: Tool): string | undefined {
  if (!located.has(tool)) located.set(tool, TOOLS[tool].locate());
  return located.get(tool);
}

/** "redis-cli is missing (apt-get install redis-tools)" for each missing tool, or undefined. */
export function missingTools(...tools: Tool[]): string | undefined {
  const missing = tools.filter((tool) => locateTool(tool) === undefined);
  if (missing.length === 0) return undefined;
  return missing.map((tool) => `${tool} is missing (${TOOLS[tool].install})`).join("; ");
}

/**
 * The path of `tool`, for a harness that starts it.
 * @throws Error naming the package to install when the machine lacks it.
 */
export function toolPath(tool: Tool): string {
  const path = locateTool(tool);
  if (path === undefined) throw new Error(missingTools(tool));
  return path;
}

/** True under CI (`CI=true`, as GitHub Actions, GitLab and `.ci/run` set it). */
export function underCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== "" && ci !== "0" && ci.toLowerCase() !== "false";
}

/**
 * Whether the tests that need `tools` must be skipped (`describe.skipIf(skipWithout(…))`): true
 * when one is missing. Under CI it also adds a test that fails, naming the package to install;
 * elsewhere a skipped test that says the same, and one line on stderr. Call it where the suite
 * is declared (module level or a `describe` body), once per suite.
 */
export function skipWithout(...tools: Tool[]): boolean {
  const why = missingTools(...tools);
  if (why === undefined) return false;
  const name = `needs ${tools.join(", ")}`;
  if (underCi()) {
    it(name, () => {
      throw new Error(`${why}: under CI a missing tool fails the suite`);
    });
  } else {
    // A skipped test of its own, so the reporter lists the reason, and one line on stderr.
    it.skip(`${name}: ${why}`, () => {});
    console.warn(`SKIPPED: ${why} (with CI=true this fails)`);
  }
  return true;
}

function executable(path: string): string | undefined {
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const found = executable(join(dir, name));
    if (found !== undefined) return found;
  }
  return undefined;
}

/** $PYTHON, else the first python3 on PATH that imports grpc and google.protobuf. */
function pythonWithGrpc(): string | undefined {
  const candidates = [process.env.PYTHON, "python3", "/usr/bin/python3"].filter(
    (p): p is string => p !== undefined && p !== "",
  );
  for (const candidate of candidates) {
    try {
      execFileSync(candidate, ["-c", "import grpc, google.protobuf"], { stdio: "ignore" });
      return candidate;
    } catch {
      // not this one
    }
  }
  return undefined;
}
