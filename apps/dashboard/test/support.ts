import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Browser, chromium, type Locator, type Page } from "playwright-core";
import { SERVER_COMMAND, track } from "../../server/test/harness.ts";
import { toolPath } from "../../server/test/tools.ts";

const here = dirname(fileURLToPath(import.meta.url));
const serverDir = join(here, "../../server");

/** Where screenshots go: the workspace's test-results/ (ignored by git, kept by CI). */
export const SCREENSHOTS = join(here, "../../../test-results/dashboard");

/** A port nobody listens on now: the kernel's pick for port 0, released at once. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => {
        if (address === null || typeof address === "string") reject(new Error("no port"));
        else resolve(address.port);
      });
    });
  });
}

/** A running apps/server process. */
export interface ServerProcess {
  url: string;
  /** Its stdout and stderr so far (pino JSON lines). */
  output(): string;
  /** SIGTERM, then resolves when the process has exited. */
  stop(): Promise<void>;
}

/**
 * Starts the real server (the compiled one, as the server's tests do) on `port` with the SQLite
 * store in `dataDir` and the settings in `env` (AUTH_JWT_SECRET, …), and resolves once it answers
 * HTTP.
 */
export async function startServer(
  port: number,
  dataDir: string,
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, SERVER_COMMAND, {
    cwd: serverDir,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      STORE: "sqlite",
      DATA_DIR: dataDir,
      LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  // A test run that dies mid-test must not leave a server holding the port.
  track(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited at start-up:\n${output}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the server did not answer HTTP within 30 s:\n${output}`);
    }
    try {
      const res = await fetch(`${url}/`, { headers: { accept: "text/html" } });
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    output: () => output,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the server did not exit within 15 s of SIGTERM:\n${output}`)),
          15_000,
        );
      });
      await Promise.race([exited, late]).finally(() => clearTimeout(timer));
    },
  };
}

/** The CLI, whose `token` command mints tokens from the server's secret, as an operator does. */
const CLI = join(here, "../../cli/bin/switchboard.js");

/** `switchboard token ARGS` (e.g. `--sub alice --roles admin`) signed with `secret`. */
export async function mintToken(secret: string, args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, "token", ...args], {
    env: { ...process.env, AUTH_JWT_SECRET: secret },
  });
  return stdout.trim();
}

/** Debian's Chromium (or CHROMIUM_PATH), headless (never a downloaded browser). */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: toolPath("chromium"),
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/** Writes a screenshot of `page` to {@link SCREENSHOTS} as `<name>.png`; returns the path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** The stored offsets shown in the page's feed, in order. */
export function feedOffsets(page: Page): Promise<number[]> {
  return page.$$eval("[role=log] li[data-offset]", (items) =>
    items.map((li) => Number((li as HTMLElement).dataset.offset)),
  );
}

/** One axe-core rule broken on a page, as a test failure names it. */
export interface AxeViolation {
  id: string;
  impact: string;
  help: string;
  /** CSS selectors of the offending elements (the first few). */
  targets: string[];
}

/** axe-core's browser build, injected into pages under test (no network). */
const AXE_SCRIPT = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/**
 * Runs axe-core (Deque's accessibility rules, WCAG 2.x A and AA and best practices) in `page`
 * and returns the violations of impact `serious` or `critical`: what the dashboard's browser
 * tests fail on. axe is injected with a script tag the first time.
 */
export async function seriousAxeViolations(page: Page): Promise<AxeViolation[]> {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: AXE_SCRIPT });
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: typeof import("axe-core") }).axe;
    const results = await axe.run(document, { resultTypes: ["violations"] });
    return results.violations.map((v) => ({
      id: v.id,
      impact: v.impact ?? "",
      help: v.help,
      targets: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
    }));
  });
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/**
 * Picks the light then the dark theme with the page's Theme control; in each, saves a
 * screenshot (`<name>-<theme>.png`) and runs axe-core. Returns the
 * serious and critical violations as lines naming the page, theme, rule and elements.
 */
export async function axeInBothThemes(page: Page, name: string): Promise<string[]> {
  const found: string[] = [];
  const theme = page.getByRole("combobox", { name: "Theme" });
  for (const choice of ["light", "dark"] as const) {
    await theme.selectOption(choice);
    await screenshot(page, `${name}-${choice}`);
    for (const v of await seriousAxeViolations(page))
      found.push(`${name} (${choice}): ${v.id} [${v.impact}] ${v.help}: ${v.targets.join(", ")}`);
  }
  return found;
}

/** A locator's text with its whitespace collapsed. */
export async function text(locator: Locator): Promise<string> {
  return ((await locator.textContent()) ?? "").replace(/\s+/g, " ").trim();
}
