// @switchboard/client as someone else's project gets it, following the repository README's
// section "The client library": packed with `pnpm pack` (prepack builds dist/: ESM,
// .d.ts and the generated schema), installed with the README's own `npm install` line into a
// project made by `npm init -y` outside the workspace, then the README's Node example, taken
// from the README as written, and a longer plain `node` program (packed-consumer.mjs) run
// against a real server, which the latter has killed (kill -9) and restarted under its live
// subscription.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type ServerProcess, startServer } from "../../../apps/server/test/harness.js";

const run = promisify(execFile);
const LIBS = fileURLToPath(new URL("../../", import.meta.url));
const README = fileURLToPath(new URL("../../../README.md", import.meta.url));
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

/** The README's section "The client library", where everything below is read from. */
function readmeSection(): string {
  const readme = readFileSync(README, "utf8");
  const start = readme.indexOf("\n### The client library\n");
  expect(start, "README section 'The client library'").toBeGreaterThan(0);
  // Up to the next heading of its level or above (its code blocks hold no such line).
  const end = readme.slice(start + 1).search(/\n#{2,3} /);
  return readme.slice(start, end < 0 ? undefined : start + 1 + end);
}

/** The body of the first ```lang block after `marker` in the section. */
function fencedAfter(marker: string, lang: string): string {
  const section = readmeSection();
  const at = section.indexOf(marker);
  expect(at, `README: ${marker}`).toBeGreaterThan(0);
  const open = section.indexOf(`\n\`\`\`${lang}\n`, at);
  const close = section.indexOf("\n```\n", open + 1);
  expect(open, `README: a ${lang} block after ${marker}`).toBeGreaterThan(0);
  return section.slice(open + lang.length + 5, close + 1);
}

/**
 * The README's `npm install` line as arguments for this machine: each tarball it names from
 * `packs` (where this test packed them), each registry package at the workspace's version.
 */
function readmeInstall(packs: string): string[] {
  const line = fencedAfter("Pack it from the repository", "sh")
    .split("\n")
    .find((l) => l.startsWith("npm install "));
  expect(line, "README: an `npm install` line").toBeDefined();
  const args = (line as string).replace(/#.*/, "").trim().split(/\s+/).slice(2);
  return args.map((arg) => {
    if (arg.endsWith(".tgz")) {
      const tarball = join(packs, basename(arg));
      expect(existsSync(tarball), `README installs ${arg}: packed as ${tarball}?`).toBe(true);
      return tarball;
    }
    return `${arg}@${workspaceVersion(arg)}`;
  });
}

/** A registry that answers 404 to everything and keeps each request's path. */
async function countingRegistry(): Promise<{ url: string; requests: string[]; server: Server }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? "");
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, requests, server };
}

/** Runs `node <file>` in `cwd` to its end (at most 60 s). */
async function runNode(
  cwd: string,
  file: string,
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [file], { cwd, env: { ...process.env, ...env } });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/**
 * What the README's Node example prints on its first run in an empty room: the send and its
 * retry, the chat session's lines, then the followed room's stored messages.
 */
function expectExampleOutput(stdout: string, room: string): void {
  const lines = stdout.trimEnd().split("\n");
  // The retry found the stored message and said it was one.
  expect(lines[0], stdout).toBe("stored as #1; the retry: #1, duplicate: true");
  // The chat session: the backlog, its JOIN, its own line, each shown before close() returned.
  expect(
    lines.filter((l) => l.startsWith("chat ")),
    stdout,
  ).toEqual(["chat #1 alice: hello", "chat #2 alice: alice joined", "chat #3 alice: hi all"]);
  // The followed room: stored messages only (no welcome, no #0), each once, in order, until the
  // signal's timeout ended the loop without an error (the caller checks exit 0, a quiet stderr).
  const followed = lines.filter((l) => l.startsWith("#"));
  expect(followed.slice(0, 3), stdout).toEqual([
    "#1 alice: hello",
    "#2 alice: alice joined",
    "#3 alice: hi all",
  ]);
  expect(followed.map((l) => Number(/^#(\d+) /.exec(l)?.[1]))).toEqual(
    followed.map((_, i) => i + 1),
  );
  expect(stdout).not.toMatch(/Welcome|#0 /);
  expect(lines, `${room}: nothing else`).toHaveLength(1 + 3 + followed.length);
}

interface Manifest {
  private?: boolean;
  type?: string;
  sideEffects?: boolean;
  exports: Record<string, { types: string; import: string }>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
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

describe("the packed package in a project of its own, as the README installs and uses it", () => {
  let root: string;
  let project: string;
  let packs: string;
  let protoTarball: string;
  let server: ServerProcess;
  let registryRequests: string[];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "switchboard-packed-"));
    packs = join(root, "packs");
    project = join(root, "my-project");
    mkdirSync(packs);
    mkdirSync(project);
    [protoTarball] = await Promise.all([pack("proto", packs), pack("client", packs)]);
    await run("npm", ["init", "-y"], { cwd: project, timeout: 60_000 });
    // The README's install line, with @switchboard/* pointed at a registry of our own: npm
    // must not look any of them up (the public registry would answer 404, or someone else's
    // package). The other packages come from npm's cache or the registry, as for a user.
    const registry = await countingRegistry();
    registryRequests = registry.requests;
    const npmInstall = (packages: string[]) =>
      run(
        "npm",
        [
          "install",
          "--prefer-offline",
          "--no-audit",
          "--no-fund",
          `--@switchboard:registry=${registry.url}`,
          ...packages,
        ],
        { cwd: project, timeout: 180_000 },
      );
    try {
      await npmInstall(readmeInstall(packs));
      // "Browsers": connect-web beside the tarball, for the same code with createWebTransport.
      const connectWeb = "@connectrpc/connect-web";
      await npmInstall([`${connectWeb}@${workspaceVersion(connectWeb)}`]);
    } finally {
      registry.server.close();
    }
    copyFileSync(CONSUMER, join(project, "consumer.mjs"));
    writeFileSync(join(project, "example.mjs"), fencedAfter("**Node**", "js"));
    server = await startServer({ store: "sqlite" });
  }, 300_000);

  afterAll(async () => {
    await server?.close();
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it("install with the README's line, without a registry lookup for @switchboard/*", () => {
    expect(registryRequests).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(project, "package.json"), "utf8")) as {
      type?: string;
      dependencies: Record<string, string>;
    };
    // What `npm init -y` writes, hence the README's example.mjs.
    expect(manifest.type).not.toBe("module");
    expect(Object.keys(manifest.dependencies).sort()).toEqual([
      "@connectrpc/connect-node",
      "@connectrpc/connect-web",
      "@switchboard/client",
    ]);
    // The schema is inside the client, not a package of its own in the project; the peers are
    // the project's own copies (npm installed @bufbuild/protobuf and @connectrpc/connect), none
    // nested under the client.
    expect(existsSync(join(project, "node_modules", "@switchboard", "proto"))).toBe(false);
    expect(
      existsSync(join(project, "node_modules", "@switchboard", "client", "node_modules")),
    ).toBe(false);
    for (const peer of ["@bufbuild/protobuf", "@connectrpc/connect"]) {
      expect(existsSync(join(project, "node_modules", peer, "package.json")), peer).toBe(true);
    }
  });

  it("ship built ESM with declarations, point there, and name no @switchboard/* package", async () => {
    const client = JSON.parse(
      readFileSync(join(project, "node_modules", "@switchboard", "client", "package.json"), "utf8"),
    ) as Manifest;
    const { stdout } = await run("tar", ["-xzOf", protoTarball, "package/package.json"]);
    const proto = JSON.parse(stdout) as Manifest;
    for (const manifest of [client, proto]) {
      expect(manifest.private).toBeUndefined();
      expect(manifest.type).toBe("module");
      expect(manifest.sideEffects).toBe(false);
      for (const entry of Object.values(manifest.exports)) {
        expect(entry.types).toMatch(/^\.\/dist\/.*\.d\.ts$/);
        expect(entry.import).toMatch(/^\.\/dist\/.*\.js$/);
      }
    }
    expect(Object.keys(client.exports)).toEqual([
      ".",
      "./node",
      "./web",
      "./proto",
      "./trace-context",
      "./rules",
    ]);
    // connect-node and connect-web: optional peers, one per platform; OpenTelemetry's API only
    // where the application traces.
    expect(client.peerDependenciesMeta).toEqual({
      "@connectrpc/connect-node": { optional: true },
      "@connectrpc/connect-web": { optional: true },
      "@opentelemetry/api": { optional: true },
    });
    const runtime = { ...client.dependencies, ...client.peerDependencies };
    expect(Object.keys(runtime).filter((name) => name.startsWith("@switchboard/"))).toEqual([]);
  });

  it("run the README's Node example as written: a send, a chat session, a followed room", async () => {
    const { code, stdout, stderr } = await runNode(project, "example.mjs", {
      SWITCHBOARD_URL: server.baseUrl,
    });
    expect({ code, stderr }, stdout).toEqual({ code: 0, stderr: "connecting\nlive\nclosed\n" });
    expectExampleOutput(stdout, "general");
  });

  it("run the same code with createWebTransport from @switchboard/client/web (connect-web on Node's fetch)", async () => {
    // The README's "Browsers": the Node example with the web transport; a room of its own.
    const example = fencedAfter("**Node**", "js");
    const web = example
      .replace('"@switchboard/client/node"', '"@switchboard/client/web"')
      .replaceAll("createNodeTransport", "createWebTransport")
      .replaceAll('room: "general"', 'room: "general-web"');
    expect(web).not.toMatch(/createNodeTransport|client\/node"|"general"/);
    writeFileSync(join(project, "example-web.mjs"), web);
    const { code, stdout, stderr } = await runNode(project, "example-web.mjs", {
      SWITCHBOARD_URL: server.baseUrl,
    });
    expect({ code, stderr }, stdout).toEqual({ code: 0, stderr: "connecting\nlive\nclosed\n" });
    expectExampleOutput(stdout, "general-web");
  });

  it("run the README's Node example with no server there: describeError's sentence, exit 1", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const { code, stdout, stderr } = await runNode(project, "example.mjs", {
      SWITCHBOARD_URL: url,
    });
    expect({ code, stdout, stderr }).toEqual({
      code: 1,
      stdout: "",
      stderr: `server unavailable (connection refused at ${url})\n`,
    });
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
