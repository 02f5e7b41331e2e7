// @vitest-environment node
// The dashboard in Debian's Chromium against a server with authentication on: with a room-scoped
// token (no admin role) the Metrics and Logs pages say they need the admin role, once, instead of
// failing and retrying; with an admin token they are live.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  axeInBothThemes,
  freePort,
  launchChromium,
  mintToken,
  type ServerProcess,
  screenshot,
  startServer,
  text,
} from "./support.ts";

const SECRET = "dashboard-roles-secret-0123456789abcdef";
const SOON = { timeout: 10_000 };

let server: ServerProcess;
let browser: Browser;
const dataDir = mkdtempSync(join(tmpdir(), "switchboard-dashboard-roles-"));

beforeAll(async () => {
  const port = await freePort();
  [server, browser] = await Promise.all([
    startServer(port, dataDir, { AUTH_JWT_SECRET: SECRET }),
    launchChromium(),
  ]);
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** `switchboard token ARGS` with the server's secret. */
function mint(args: string[]): Promise<string> {
  return mintToken(SECRET, args);
}

/** Pastes `token` into the form the page shows once the server asked for one. */
async function useToken(page: Page, token: string): Promise<void> {
  const input = page.getByLabel("Access token", { exact: true });
  await input.waitFor(SOON);
  await input.fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
}

it("a room-scoped token: Metrics and Logs say they need the admin role, without retrying; an admin token reads them", async () => {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: "en-GB",
  });
  const page = await context.newPage();
  const opened: string[] = [];
  page.on("request", (request) => {
    const m = /\/chat\.\w+\/(StreamMetrics|StreamLogs)$/.exec(request.url());
    if (m !== null) opened.push(m[1] as string);
  });
  const count = (rpc: string) => opened.filter((r) => r === rpc).length;

  await page.goto(`${server.url}/charts`);
  await useToken(page, await mint(["--sub", "alice", "--rooms", "team-*"]));
  const notice = page.getByRole("region", { name: "This page needs the admin role" });
  await notice.waitFor(SOON);
  expect(await text(notice)).toContain(
    'The server refused StreamMetrics for the token in use: permission_denied: chat.ChatService/StreamMetrics needs the admin role: the token of alice has no "admin" in its roles claim',
  );
  expect(await text(page.getByRole("status", { name: "Metrics stream status" }))).toBe(
    "not allowed",
  );
  expect(await page.getByText(/^\d+ samples?$/).count()).toBe(0);
  await screenshot(page, "metrics-needs-admin");
  const a11y = await axeInBothThemes(page, "metrics-needs-admin");
  const metricsCalls = count("StreamMetrics");
  // A retry would come within the backoff's first steps (250 ms, 500 ms, …).
  await page.waitForTimeout(1_500);
  expect(count("StreamMetrics")).toBe(metricsCalls);

  await page.getByRole("link", { name: "Logs" }).click();
  await page.getByRole("region", { name: "This page needs the admin role" }).waitFor(SOON);
  expect(await text(page.getByRole("status", { name: "Log stream status" }))).toBe("not allowed");
  const logsCalls = count("StreamLogs");
  expect(logsCalls).toBeGreaterThan(0);
  await page.waitForTimeout(1_500);
  expect(count("StreamLogs")).toBe(logsCalls);
  await screenshot(page, "logs-needs-admin");
  a11y.push(...(await axeInBothThemes(page, "logs-needs-admin")));
  expect(a11y).toEqual([]);

  // An admin token: forget the scoped one, paste it, and the tail is live.
  await page.getByRole("button", { name: "Forget token" }).click();
  await useToken(page, await mint(["--sub", "root", "--roles", "admin"]));
  await expect
    .poll(() => text(page.getByRole("status", { name: "Log stream status" })), SOON)
    .toBe("live");
  expect(await page.getByRole("region", { name: /needs the admin role/ }).count()).toBe(0);
  await page
    .getByRole("log", { name: "Server log" })
    .getByText(/^switchboard listening/)
    .waitFor(SOON);

  await page.getByRole("link", { name: "Metrics" }).click();
  await expect
    .poll(() => text(page.getByRole("status", { name: "Metrics stream status" })), SOON)
    .toBe("live");
  await context.close();
});
