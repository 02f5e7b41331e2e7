// @vitest-environment node
// The dashboard in Debian's Chromium against a server with authentication on, as a new user
// meets it: without a token the header is not Live and the room list says why (not "Loading
// rooms…" for ever); a wrong token is said to be refused; an accepted token leaves no banner
// behind and the token's subject replaces "Your name"; the logs page filters calls by method,
// code and user. Each state is checked with axe-core, light and dark, and saved as screenshots.
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
  axeInBothThemes,
  freePort,
  launchChromium,
  mintToken,
  type ServerProcess,
  screenshot,
  startServer,
  text,
} from "./support.ts";

const noChromium = skipWithout("chromium");
const it = test.skipIf(noChromium);
const SECRET = "dashboard-auth-secret-0123456789abcdef";
const SOON = { timeout: 10_000 };

let server: ServerProcess;
let browser: Browser;
const dataDir = mkdtempSync(join(tmpdir(), "switchboard-dashboard-auth-"));

beforeAll(async () => {
  if (noChromium) return;
  [server, browser] = await Promise.all([
    freePort().then((port) => startServer(port, dataDir, { AUTH_JWT_SECRET: SECRET })),
    launchChromium(),
  ]);
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

function connectionState(page: Page): Promise<string> {
  return text(page.getByRole("status", { name: "Connection" }));
}

async function useToken(page: Page, token: string): Promise<void> {
  await page.getByLabel("Access token", { exact: true }).fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
}

/** The summaries of the log lines shown ("SendMessage InvalidArgument 0.4 ms"). */
function logSummaries(page: Page): Promise<string[]> {
  return page
    .getByRole("log", { name: "Server log" })
    .locator("li .msg")
    .evaluateAll((items) => items.map((i) => (i.textContent ?? "").replace(/\s+/g, " ").trim()));
}

it("no token: not Live, the reason instead of Loading rooms; a wrong one is refused; an accepted one: Live, no banner, the subject as the name", async () => {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: "en-GB",
  });
  const page = await context.newPage();
  const a11y: string[] = [];
  await page.goto(`${server.url}/`);

  await expect.poll(() => connectionState(page), SOON).toMatch(/^Token needed/);
  const reason = page.getByRole("alert", { name: "Room list error" });
  await reason.waitFor(SOON);
  expect(await text(reason)).toContain(
    "unauthenticated: missing bearer token (Authorization: Bearer <token>)",
  );
  // Still not Live, still no "Loading rooms…", after the list's retries.
  await page.waitForTimeout(2_000);
  expect(await connectionState(page)).toMatch(/^Token needed/);
  expect(await page.getByText("Loading rooms…").count()).toBe(0);
  // Said once, by the token form with the server's words, not by a banner per refused call.
  expect(await text(page.locator("#access-token-hint"))).toContain(
    "The server said: missing bearer token (Authorization: Bearer <token>)",
  );
  expect(await page.getByRole("region", { name: "Failed calls" }).getByRole("alert").count()).toBe(
    0,
  );
  a11y.push(...(await axeInBothThemes(page, "auth-no-token")));
  // The operator's pages say the same, instead of an empty tail or empty charts.
  for (const [link, rpc] of [
    ["Logs", "StreamLogs"],
    ["Metrics", "StreamMetrics"],
  ] as const) {
    await page.getByRole("link", { name: link }).click();
    const notice = page.getByRole("region", { name: "This page needs an access token" });
    await notice.waitFor(SOON);
    expect(await text(notice)).toContain(
      `The server refused ${rpc}: unauthenticated: missing bearer token`,
    );
    a11y.push(...(await axeInBothThemes(page, `auth-${link.toLowerCase()}-no-token`)));
  }
  await page.getByRole("link", { name: "Rooms" }).click();

  // A token signed with another secret.
  await useToken(page, await mintToken("another-secret-0123456789abcdefghijkl", ["--sub", "eve"]));
  await expect.poll(() => connectionState(page), SOON).toMatch(/^Token refused/);
  await page.getByText("The server refused this token. Paste another one.").waitFor(SOON);
  expect(await text(page.getByRole("alert", { name: "Room list error" }))).toMatch(
    /unauthenticated: invalid token/,
  );
  a11y.push(...(await axeInBothThemes(page, "auth-refused-token")));

  await useToken(page, await mintToken(SECRET, ["--sub", "alice", "--roles", "admin"]));
  await expect.poll(() => connectionState(page), SOON).toMatch(/^Live/);
  await page.getByText("No rooms yet. Name one above to create it.").waitFor(SOON);
  // No banner stays: no failed call listed, no token form, no room list error.
  const failures = page.getByRole("region", { name: "Failed calls" }).getByRole("alert");
  expect(await failures.count()).toBe(0);
  expect(await page.getByLabel("Access token", { exact: true }).count()).toBe(0);
  expect(await page.getByRole("alert", { name: "Room list error" }).count()).toBe(0);
  // The token's subject instead of "Your name".
  expect(await page.getByRole("textbox", { name: "Your name" }).count()).toBe(0);
  expect(await text(page.getByTestId("subject"))).toBe("alice");
  expect(await text(page.getByText(/^Using an access token/))).toContain(
    "Using an access token for alice.",
  );
  // A moment later still: nothing came back (a late refusal of the old token's calls).
  await page.waitForTimeout(1_500);
  expect(await failures.count()).toBe(0);
  expect(await connectionState(page)).toMatch(/^Live/);

  // What alice sends is shown as hers.
  await page.getByLabel("Room", { exact: true }).fill("general");
  await page.getByRole("button", { name: "Join", exact: true }).click();
  const box = page.getByRole("textbox", { name: "Message", exact: true });
  await box.fill("hello there");
  await box.press("Enter");
  const item = page
    .getByRole("log", { name: /^Feed of #general/ })
    .locator("li", { hasText: "hello there" });
  await item.waitFor(SOON);
  expect(await text(item)).toContain("alice");
  a11y.push(...(await axeInBothThemes(page, "auth-signed-in")));
  expect(a11y).toEqual([]);
  await context.close();
});

it("the logs page filters calls by method, code and user", async () => {
  const bob = createClient(
    ChatService,
    createNodeTransport({
      baseUrl: server.url,
      token: await mintToken(SECRET, ["--sub", "bob"]),
    }),
  );
  const carol = createClient(
    ChatService,
    createNodeTransport({
      baseUrl: server.url,
      token: await mintToken(SECRET, ["--sub", "carol"]),
    }),
  );
  await bob.sendMessage({ room: "ops", user: "bob", content: "deploying" });
  await expect(bob.sendMessage({ room: "ops", user: "bob", content: "" })).rejects.toThrow();
  await carol.sendMessage({ room: "ops", user: "carol", content: "ok" });
  await carol.getHistory({ room: "ops", limit: 10 });

  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: "en-GB",
  });
  const page = await context.newPage();
  await page.goto(`${server.url}/logs`);
  await useToken(page, await mintToken(SECRET, ["--sub", "root", "--roles", "admin"]));
  await expect
    .poll(() => text(page.getByRole("status", { name: "Log stream status" })), SOON)
    .toBe("live");
  const tail = page.getByRole("log", { name: "Server log" });
  await tail.getByText(/^switchboard listening/).waitFor(SOON);

  const code = page.getByRole("combobox", { name: "Code" });
  const user = page.getByRole("combobox", { name: "User" });
  const method = page.getByRole("combobox", { name: "Method" });
  await user.selectOption("bob");
  await expect
    .poll(() => logSummaries(page), SOON)
    .toEqual([
      expect.stringMatching(/^SendMessage OK [\d.]+ ms$/),
      expect.stringMatching(/^SendMessage InvalidArgument [\d.]+ ms$/),
    ]);
  await code.selectOption({ label: "failures (not OK)" });
  await expect
    .poll(() => logSummaries(page), SOON)
    .toEqual([expect.stringMatching(/^SendMessage InvalidArgument/)]);
  // The failure stands out: its line is marked as a client error, and its code is boxed.
  const failed = tail.locator("li", { hasText: "InvalidArgument" });
  expect(await failed.getAttribute("data-code")).toBe("client");
  // Its request id is one line, shortened, the whole id on hover.
  const rid = failed.locator(".rid");
  const full = ((await rid.getAttribute("title")) ?? "").replace(/^request id /, "");
  expect(full).toMatch(/^[0-9a-f-]{36}$/);
  expect(await text(rid)).toBe(`request id ${full.slice(0, 8)}…`);
  const box = await rid.boundingBox();
  expect(box?.height ?? 0).toBeLessThan(24);

  await user.selectOption("carol");
  await code.selectOption({ label: "any" });
  await method.selectOption("GetHistory");
  await expect
    .poll(() => logSummaries(page), SOON)
    .toEqual([expect.stringMatching(/^GetHistory OK/)]);
  await method.selectOption({ label: "any" });
  await code.selectOption("OK");
  await expect
    .poll(() => logSummaries(page), SOON)
    .toEqual([expect.stringMatching(/^SendMessage OK/), expect.stringMatching(/^GetHistory OK/)]);
  await screenshot(page, "auth-logs-filtered");
  await context.close();
});
