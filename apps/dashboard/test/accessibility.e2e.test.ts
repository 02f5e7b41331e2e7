// @vitest-environment node
// Every dashboard page in Debian's Chromium, in the light and the dark theme, checked with
// axe-core: no violation of impact serious or critical (the pages under authentication are
// checked in auth.e2e.test.ts). Each page is also saved as a screenshot.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";
import { skipWithout } from "../../server/test/tools.ts";
import {
  type AxeViolation,
  freePort,
  launchChromium,
  type ServerProcess,
  screenshot,
  seriousAxeViolations,
  startServer,
} from "./support.ts";

const noChromium = skipWithout("chromium");
const it = test.skipIf(noChromium);
const SOON = { timeout: 10_000 };
const THEMES = ["light", "dark"] as const;

/** Every page of the dashboard, and what shows once it has loaded. */
const PAGES: ReadonlyArray<{
  name: string;
  path: string;
  ready: (page: Page) => Promise<unknown>;
}> = [
  {
    name: "rooms",
    path: "/",
    ready: (page) => page.getByRole("link", { name: /#general/ }).waitFor(SOON),
  },
  {
    name: "room",
    path: "/rooms/general",
    ready: (page) =>
      page
        .getByRole("log", { name: /^Feed of #general/ })
        .getByText("the second message")
        .waitFor(SOON),
  },
  {
    name: "metrics",
    path: "/charts",
    // Two samples: the charts have drawn.
    ready: (page) => page.getByText(/^([2-9]|\d\d+) samples$/).waitFor(SOON),
  },
  {
    name: "logs",
    path: "/logs",
    ready: (page) =>
      page
        .getByRole("log", { name: "Server log" })
        .getByText(/^switchboard listening/)
        .waitFor(SOON),
  },
  {
    name: "import",
    path: "/import",
    ready: (page) => page.getByRole("heading", { name: "Import" }).waitFor(SOON),
  },
  {
    name: "not-found",
    path: "/no-such-page",
    ready: (page) => page.getByRole("heading", { name: "Not found" }).waitFor(SOON),
  },
];

let server: ServerProcess;
let browser: Browser;
const dataDir = mkdtempSync(join(tmpdir(), "switchboard-dashboard-a11y-"));

beforeAll(async () => {
  if (noChromium) return;
  [server, browser] = await Promise.all([
    freePort().then((port) => startServer(port, dataDir)),
    launchChromium(),
  ]);
  const client = createClient(ChatService, createNodeTransport({ baseUrl: server.url }));
  await client.sendMessage({ room: "general", user: "bob", content: "the first message" });
  await client.sendMessage({ room: "general", user: "ann", content: "the second message" });
  // A refused call, so that the logs page shows a failure line.
  await client.sendMessage({ room: "general", user: "ann", content: "" }).catch(() => {});
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

it("every page, light and dark: no serious or critical axe-core violation", async () => {
  const found: Array<AxeViolation & { where: string }> = [];
  for (const theme of THEMES) {
    const context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      locale: "en-GB",
    });
    // The theme control's stored choice, before the app reads it.
    await context.addInitScript((choice) => {
      localStorage.setItem("switchboard.theme", choice);
      localStorage.setItem("switchboard.user", "viewer");
    }, theme);
    for (const { name, path, ready } of PAGES) {
      const page = await context.newPage();
      await page.goto(`${server.url}${path}`);
      await ready(page);
      expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe(theme);
      await screenshot(page, `a11y-${name}-${theme}`);
      for (const violation of await seriousAxeViolations(page))
        found.push({ ...violation, where: `${name} (${theme})` });
      await page.close();
    }
    await context.close();
  }
  // A phone: the pages whose headers hold the most controls.
  const phone = await browser.newContext({
    viewport: { width: 375, height: 740 },
    locale: "en-GB",
  });
  await phone.addInitScript(() => localStorage.setItem("switchboard.theme", "dark"));
  for (const { name, path, ready } of PAGES.filter((p) => ["logs", "metrics"].includes(p.name))) {
    const page = await phone.newPage();
    await page.goto(`${server.url}${path}`);
    await ready(page);
    await screenshot(page, `a11y-${name}-375-dark`);
    for (const violation of await seriousAxeViolations(page))
      found.push({ ...violation, where: `${name} (375 px, dark)` });
  }
  await phone.close();
  // One failure naming every page, rule and element.
  expect(
    found.map((v) => `${v.where}: ${v.id} [${v.impact}] ${v.help}: ${v.targets.join(", ")}`),
  ).toEqual([]);
});
