// @vitest-environment node
// The room view when the server's data is lost under an open page: the server stops, its SQLite
// database is deleted (a wiped DATA_DIR), and it starts again empty while the page is open. By the
// time the page's feed reconnects, the new log has grown past the offset it had. The page must
// say the history was reset and show the new log, not append the new log's later offsets to the
// old messages as if nothing happened.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  feedOffsets,
  freePort,
  launchChromium,
  type ServerProcess,
  screenshot,
  startServer,
  text,
} from "./support.ts";

let server: ServerProcess;
let browser: Browser;
let port: number;
const SOON = { timeout: 15_000 };
const dataDir = mkdtempSync(join(tmpdir(), "switchboard-dashboard-reset-"));

beforeAll(async () => {
  port = await freePort();
  [server, browser] = await Promise.all([startServer(port, dataDir), launchChromium()]);
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const feed = (page: Page) => page.getByRole("log", { name: /^Feed of #/ });
const feedStatus = (page: Page) => text(page.getByRole("status", { name: "Feed status" }));

it("says the history was reset and shows the new log instead of mixing it with the old one", async () => {
  const room = "reset";
  const client = createClient(ChatService, createNodeTransport({ baseUrl: server.url }));
  for (let i = 1; i <= 3; i++) await client.sendMessage({ room, user: "cli", content: `old ${i}` });
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: "en-GB",
  });
  const page = await context.newPage();
  await page.goto(`${server.url}/rooms/${room}?protocol=connect&user=fay`);
  await expect.poll(() => feedStatus(page), SOON).toBe("live");
  await feed(page).getByText("old 3").waitFor();
  // Three: the page only looks at the room, so fay's visit stores no JOIN.
  expect(await feedOffsets(page)).toEqual([1, 2, 3]);

  // The data is lost while the page is open, and the new log grows past offset 3 before the
  // page gets through again (its calls are cut meanwhile, as a network outage would).
  await page.route("**/chat.ChatService/**", (route) => route.abort("connectionrefused"));
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
  await expect.poll(() => feedStatus(page), SOON).toBe("reconnecting…");
  server = await startServer(port, dataDir);
  for (let i = 1; i <= 6; i++) await client.sendMessage({ room, user: "cli", content: `new ${i}` });
  await page.unrouteAll();

  const notice = page.getByRole("status", { name: "History reset" });
  await notice.waitFor(SOON);
  expect(await text(notice)).toMatch(
    /^History was reset at .+: the server no longer has the messages shown before \(log [\w-]{12} is gone\)\. Showing its new log [\w-]{12}, messages 1–6 and what comes next\. Dismiss$/,
  );
  // Shown where it happened, not as a failed call.
  expect(await page.getByRole("region", { name: "Failed calls" }).getByRole("alert").count()).toBe(
    0,
  );
  await expect.poll(() => feedStatus(page), SOON).toBe("live");
  await feed(page).getByText("new 6").waitFor();
  // Only the new log, each message once, in its own offsets.
  for (const gone of ["old 1", "old 2", "old 3"]) {
    expect(await feed(page).getByText(gone, { exact: true }).count()).toBe(0);
  }
  for (let i = 1; i <= 6; i++) {
    expect(await feed(page).getByText(`new ${i}`, { exact: true }).count()).toBe(1);
  }
  const offsets = await feedOffsets(page);
  expect(offsets).toEqual(offsets.map((_, i) => (offsets[0] as number) + i));
  // A message sent after the reset is stored in the new log and shown once.
  const box = page.getByRole("textbox", { name: "Message", exact: true });
  await box.fill("after the reset");
  await box.press("Enter");
  await feed(page).getByText("after the reset").waitFor();
  expect(await feed(page).getByText("after the reset", { exact: true }).count()).toBe(1);
  await screenshot(page, "history-reset-1280");

  await notice.getByRole("button", { name: "Dismiss" }).click();
  expect(await page.getByRole("status", { name: "History reset" }).count()).toBe(0);
  await context.close();
});
