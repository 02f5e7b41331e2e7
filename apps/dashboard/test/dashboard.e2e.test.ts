// @vitest-environment node
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { skipWithout } from "../../server/test/tools.ts";
import {
  feedOffsets,
  freePort,
  launchChromium,
  type ServerProcess,
  screenshot,
  startServer,
  text,
} from "./support.ts";

// The real server process and Debian's Chromium: what an operator gets from `pnpm start`.
// Every test needs Chromium (tools.ts: skipped without it, or failed under CI).
const noChromium = skipWithout("chromium");
const it = test.skipIf(noChromium);
let server: ServerProcess;
let browser: Browser;
let context: BrowserContext;
let port: number;
/** How long a page may take to show what the test waits for (CI machines are slow). */
const SOON = { timeout: 10_000 };
/** The browser context most tests use: a desktop window in a fixed locale. */
const DESKTOP = { viewport: { width: 1280, height: 800 }, locale: "en-GB" } as const;
const dataDir = mkdtempSync(join(tmpdir(), "switchboard-dashboard-e2e-"));

beforeAll(async () => {
  if (noChromium) return;
  port = await freePort();
  [server, browser] = await Promise.all([startServer(port, dataDir), launchChromium()]);
  context = await browser.newContext(DESKTOP);
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Opens a room as `user` over `protocol` and waits until its feed is live. */
async function openRoom(room: string, user: string, protocol = "connect", ctx = context) {
  const page = await ctx.newPage();
  const rpcContentTypes: string[] = [];
  page.on("request", (request) => {
    if (/\/chat\.(ChatService|LogService)\//.test(request.url())) {
      rpcContentTypes.push(request.headers()["content-type"] ?? "");
    }
  });
  await page.goto(`${server.url}/rooms/${room}?protocol=${protocol}&user=${user}`);
  await expect.poll(() => feedStatus(page), SOON).toBe("live");
  return { page, rpcContentTypes };
}

function feedStatus(page: Page): Promise<string> {
  return text(page.getByRole("status", { name: "Feed status" }));
}

/** A locator's text with its whitespace collapsed, as a reader sees it. */

/** The number of metrics samples the page holds, from its "N samples" line. */
async function sampleCount(page: Page): Promise<number> {
  return Number((await text(page.getByText(/^\d+ samples?$/))).split(" ")[0]);
}

function feed(page: Page) {
  return page.getByRole("log", { name: /^Feed of #/ });
}

async function send(page: Page, text: string) {
  const box = page.getByRole("textbox", { name: "Message", exact: true });
  await box.fill(text);
  await box.press("Enter");
  await expect.poll(() => box.inputValue(), SOON).toBe("");
}

it("is served at / beside the RPC routes, which it never shadows", async () => {
  const html = { accept: "text/html" };
  for (const path of ["/", "/rooms/general", "/charts", "/logs", "/import"]) {
    const res = await fetch(`${server.url}${path}`, { headers: html });
    expect(res.status, path).toBe(200);
    expect(res.headers.get("content-type"), path).toMatch(/^text\/html/);
    expect(res.headers.get("cache-control"), path).toBe("no-cache");
  }
  const index = await (await fetch(`${server.url}/`, { headers: html })).text();
  const asset = /src="(\/assets\/[^"]+\.js)"/.exec(index)?.[1];
  const assetRes = await fetch(`${server.url}${asset}`);
  expect(assetRes.status).toBe(200);
  expect(assetRes.headers.get("cache-control")).toContain("immutable");

  // An unknown RPC stays an RPC error, even from a browser that accepts HTML.
  const unknown = await fetch(`${server.url}/chat.ChatService/NoSuchMethod`, { headers: html });
  expect(unknown.status).toBe(404);
  expect(unknown.headers.get("content-type")).not.toMatch(/text\/html/);
  // Connect's GET for side-effect-free methods still reaches the RPC.
  const history = await fetch(
    `${server.url}/chat.ChatService/GetHistory?encoding=json&message=${encodeURIComponent('{"room":"general"}')}`,
  );
  expect(history.status).toBe(200);
  expect(history.headers.get("content-type")).toMatch(/^application\/json/);
  // Non-page requests for unknown paths are not answered with the app.
  expect((await fetch(`${server.url}/no-such-file.js`)).status).toBe(404);
});

describe.each([
  { protocol: "connect", label: "Connect", contentType: /^application\/(connect\+)?proto/ },
  { protocol: "grpcweb", label: "gRPC-Web", contentType: /^application\/grpc-web\+proto/ },
])("over $label", ({ protocol, label, contentType }) => {
  it("two pages in the same room exchange messages both ways", async () => {
    const room = `pair-${protocol}`;
    const alice = await openRoom(room, "alice", protocol);
    const bob = await openRoom(room, "bob", protocol);
    expect(await alice.page.getByRole("radio", { name: label }).isChecked()).toBe(true);

    await send(alice.page, "hello from alice 👋");
    await feed(bob.page).getByText("hello from alice 👋").waitFor();
    await send(bob.page, "שלום from bob");
    await feed(alice.page).getByText("שלום from bob").waitFor();
    // Each sees the other join, once, inline.
    await feed(alice.page).getByText("bob", { exact: true }).first().waitFor();

    // Every RPC the pages made used the chosen protocol.
    for (const types of [alice.rpcContentTypes, bob.rpcContentTypes]) {
      expect(types.length).toBeGreaterThan(0);
      for (const type of types) expect(type).toMatch(contentType);
    }
    if (protocol === "connect") {
      await screenshot(alice.page, "room-1280");
    }
    await alice.page.close();
    await bob.page.close();
  });
});

it("shows a message sent from a Node client live, and the rooms list with counts and unread", async () => {
  const { page } = await openRoom("from-node", "carol");
  const client = createClient(
    ChatService,
    createNodeTransport({ baseUrl: server.url, protocol: "grpc" }),
  );
  await client.sendMessage({ room: "from-node", user: "cli", content: "sent over gRPC from Node" });
  await feed(page).getByText("sent over gRPC from Node").waitFor();

  await page.getByRole("link", { name: "Rooms", exact: true }).click();
  const entry = page.getByRole("link", { name: /#from-node/ });
  await entry.waitFor();
  // One message: carol only looks at the room (no JOIN stored for her).
  await expect.poll(() => text(entry), SOON).toMatch(/1 message · 0 members/);

  // Out of view now: new messages there are counted as unread, in the list and the title.
  await client.sendMessage({ room: "from-node", user: "cli", content: "while away 1" });
  await client.sendMessage({ room: "from-node", user: "cli", content: "while away 2" });
  await expect.poll(() => text(entry), SOON).toMatch(/2 unread/);
  expect(await page.title()).toMatch(/^\(2\) Rooms/);
  await screenshot(page, "rooms-1280");
  await page.close();
});

it("imports a JSON Lines file picked in the page, with progress", async () => {
  const page = await context.newPage();
  await page.goto(`${server.url}/import?user=importer`);
  const lines = ["one", "two 🎈", "שלוש"].map((content) => JSON.stringify({ content }));
  await page.getByLabel("JSON Lines file").setInputFiles({
    name: "export.jsonl",
    mimeType: "application/x-ndjson",
    buffer: Buffer.from(lines.join("\n")),
  });
  await page.getByRole("textbox", { name: "Target room" }).fill("imported");
  await page.getByRole("button", { name: "Import", exact: true }).click();
  await page.getByText("3 of 3 sent — done.").waitFor();
  expect(
    await page.getByRole("progressbar", { name: "Import progress" }).getAttribute("value"),
  ).toBe("3");
  await screenshot(page, "import-1280");

  await page.getByRole("link", { name: "Rooms", exact: true }).click();
  await page.getByRole("link", { name: /#imported/ }).click();
  await feed(page).getByText("שלוש").waitFor();
  await page.close();
});

it("the metrics charts gain points", async () => {
  const page = await context.newPage();
  await page.goto(`${server.url}/charts`);
  const samples = () => sampleCount(page);
  await expect.poll(samples, SOON).toBeGreaterThan(0);
  const first = await samples();
  await expect.poll(samples, SOON).toBeGreaterThan(first + 1);
  expect(await page.locator(".uplot canvas").count()).toBe(5);
  expect(await text(page.getByRole("status", { name: "Metrics stream status" }))).toBe("live");
  await screenshot(page, "metrics-1280");
  await page.close();
});

it("follows the system's colour scheme until the Theme control picks one, charts included", async () => {
  const dark = await browser.newContext({ ...DESKTOP, colorScheme: "dark" });
  const page = await dark.newPage();
  await page.goto(`${server.url}/charts`);
  await expect.poll(() => sampleCount(page), SOON).toBeGreaterThan(0);
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  // Whether the first chart's canvas has pixels of `rgb` (a series line in that colour): the
  // canvas, unlike the legend's CSS, only draws colours it can parse.
  const drawsIn = (rgb: string) =>
    page
      .locator(".uplot canvas")
      .first()
      .evaluate((canvas, want) => {
        const [r, g, b] = (want.match(/\d+/g) ?? []).map(Number) as [number, number, number];
        const c = canvas as HTMLCanvasElement;
        const px = c.getContext("2d")?.getImageData(0, 0, c.width, c.height).data ?? [];
        const near = (x: number, y: number) => Math.abs(x - y) <= 12;
        for (let i = 0; i < px.length; i += 4) {
          if (
            near(px[i] as number, r) &&
            near(px[i + 1] as number, g) &&
            near(px[i + 2] as number, b) &&
            (px[i + 3] as number) > 200
          )
            return true;
        }
        return false;
      }, rgb);
  const DARK = { bg: "rgb(13, 17, 23)", chart1: "rgb(68, 147, 248)" };
  const LIGHT = { bg: "rgb(246, 247, 249)", chart1: "rgb(10, 88, 202)" };
  expect(await background()).toBe(DARK.bg);
  await expect.poll(() => drawsIn(DARK.chart1), SOON).toBe(true);
  await page.getByRole("combobox", { name: "Theme" }).selectOption("light");
  expect(await background()).toBe(LIGHT.bg);
  await expect.poll(() => drawsIn(LIGHT.chart1), SOON).toBe(true);
  expect(await drawsIn(DARK.chart1)).toBe(false);
  await dark.close();
});

/** The failure banners the page shows. */
function banners(page: Page) {
  return page.getByRole("region", { name: "Failed calls" }).getByRole("alert");
}

function connectionState(page: Page): Promise<string> {
  return text(page.getByRole("status", { name: "Connection" }));
}

it("treats a server restart as one outage: reconnecting (attempt n), then live, no banner left, no gap or duplicate", async () => {
  const room = "restart";
  const client = createClient(ChatService, createNodeTransport({ baseUrl: server.url }));
  const { page } = await openRoom(room, "dave");
  // A second viewer at 375 px, on gRPC-Web, on the rooms list.
  const narrow = await browser.newContext({
    viewport: { width: 375, height: 740 },
    locale: "en-GB",
  });
  const phone = await narrow.newPage();
  await phone.goto(`${server.url}/?protocol=grpcweb&user=erin`);
  const logs = await context.newPage();
  await logs.goto(`${server.url}/logs`);
  const tail = logs.getByRole("log", { name: "Server log" });
  const listening = tail.getByText(/switchboard listening/);
  await listening.first().waitFor();
  expect(await listening.count()).toBe(1);

  for (let i = 1; i <= 3; i++)
    await client.sendMessage({ room, user: "cli", content: `before ${i}` });
  await feed(page).getByText("before 3").waitFor();
  // The room is listed once it has a message (looking at it stores nothing).
  await phone.getByRole("link", { name: /#restart/ }).waitFor();
  const members = page.getByRole("list", { name: "Members" });
  // Looking is not joining: no member and no JOIN for dave until he joins.
  const presence = page.getByRole("status", { name: "Presence" });
  await presence.getByText("Watching without joining").waitFor();
  expect((await client.listMembers({ room })).members.map((m) => m.user)).not.toContain("dave");
  await presence.getByRole("button", { name: "Join room" }).click();
  await members.getByText("dave").waitFor();
  expect(await text(page.locator("details.members"))).toMatch(/dave.*, online/);

  await server.stop();
  await expect.poll(() => connectionState(page), SOON).toMatch(/^Reconnecting \(attempt \d+\)/);
  await expect.poll(() => feedStatus(page), SOON).toBe("reconnecting…");
  await expect.poll(() => connectionState(phone), SOON).toMatch(/^Reconnecting \(attempt \d+\)/);
  // The attempts count up while the server is away.
  await expect.poll(() => connectionState(page), SOON).toMatch(/attempt ([2-9]|\d\d)/);
  // One state, not a pile of banners; nobody shown online while presence is unknown.
  expect(await banners(page).count()).toBe(0);
  expect(await banners(phone).count()).toBe(0);
  const panel = await text(page.locator("details.members"));
  expect(panel).toContain("Presence unknown while reconnecting");
  expect(panel).not.toContain(", online");
  // A message typed during the outage is kept and retried with its idempotency key.
  await send(page, "typed during the outage");
  await expect
    .poll(() => text(page.getByRole("status", { name: "Sending" })), SOON)
    .toMatch(/^Sending 1 message…/);
  expect(await banners(page).count()).toBe(0);
  await screenshot(page, "outage-1280");
  await screenshot(phone, "outage-375");

  server = await startServer(port, dataDir);
  for (let i = 1; i <= 3; i++)
    await client.sendMessage({ room, user: "cli", content: `after ${i}` });
  await expect.poll(() => feedStatus(page), { timeout: 15_000 }).toBe("live");
  await expect.poll(() => connectionState(page), SOON).toMatch(/^Live/);
  await expect.poll(() => connectionState(phone), { timeout: 15_000 }).toMatch(/^Live/);
  await feed(page).getByText("after 3").waitFor();
  await feed(page).getByText("typed during the outage").waitFor();
  await expect.poll(() => page.getByRole("status", { name: "Sending" }).count(), SOON).toBe(0);
  // A message sent from the page once it is back appears once.
  await send(page, "sent from the page after the restart");
  await feed(page).getByText("sent from the page after the restart").waitFor();

  // No banner was left behind by the outage, on either page.
  expect(await banners(page).count()).toBe(0);
  expect(await banners(phone).count()).toBe(0);
  await expect.poll(() => text(page.locator("details.members")), SOON).toMatch(/dave.*, online/);
  // The room list on the phone was pushed the new counts after the restart.
  await expect
    .poll(() => text(phone.getByRole("link", { name: /#restart/ })), SOON)
    .toMatch(/\d+ messages · 1 member$/);

  // Offsets 1… with no gap and no duplicate, every message once.
  const offsets = await feedOffsets(page);
  expect(offsets).toEqual(offsets.map((_, i) => i + 1));
  for (const text of [
    "before 1",
    "before 2",
    "before 3",
    "after 1",
    "after 2",
    "after 3",
    "typed during the outage",
    "sent from the page after the restart",
  ]) {
    expect(await feed(page).getByText(text, { exact: true }).count()).toBe(1);
  }
  await screenshot(page, "after-restart-1280");
  await screenshot(phone, "after-restart-375");
  await page.close();
  await narrow.close();

  // The log tail reopened on the new process and shows the start-up line this test caused.
  await expect.poll(() => listening.count(), { timeout: 15_000 }).toBe(2);
  // The dashboard's own calls are hidden unless asked for (WatchRooms, StreamLogs and the health
  // probe only the pages make); the Node client's calls show, readably.
  expect(await tail.getByText(/^SendMessage OK /).count()).toBeGreaterThan(0);
  const own = tail.locator("li").filter({ hasText: /(WatchRooms|StreamLogs|Check) [A-Z]/ });
  expect(await own.allTextContents()).toEqual([]);
  await logs.getByRole("checkbox", { name: "Show the dashboard’s own calls" }).check();
  await expect
    .poll(() => tail.getByText(/^WatchRooms [A-Za-z]+ /).count(), SOON)
    .toBeGreaterThan(0);
  await screenshot(logs, "logs-1280");
  await logs.close();
});

it("keeps the feed pinned to the newest message when the window narrows to 375 px", async () => {
  const room = "pinned";
  const client = createClient(ChatService, createNodeTransport({ baseUrl: server.url }));
  for (let i = 1; i <= 60; i++) {
    await client.sendMessage({
      room,
      user: "cli",
      content: `message ${i}: a line long enough to wrap more often once the window is narrow`,
    });
  }
  const { page } = await openRoom(room, "pin");
  await feed(page)
    .getByText(/^message 60:/)
    .waitFor();
  const gap = () => feed(page).evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  await expect.poll(gap, SOON).toBeLessThan(40);
  await page.setViewportSize({ width: 375, height: 740 });
  await expect.poll(gap, SOON).toBeLessThan(40);
  // And it still follows new messages there.
  await client.sendMessage({ room, user: "cli", content: "newest at 375 px" });
  await feed(page).getByText("newest at 375 px").waitFor();
  await expect.poll(gap, SOON).toBeLessThan(40);
  expect(await feed(page).getByText("newest at 375 px").isVisible()).toBe(true);
  await screenshot(page, "room-375-pinned");
  await page.setViewportSize({ width: 1280, height: 800 });
  await expect.poll(gap, SOON).toBeLessThan(40);
  await page.close();
});

it("is usable by keyboard alone", async () => {
  const page = await context.newPage();
  await page.goto(`${server.url}/?user=keyboard`);
  const focused = (locator: Locator) => locator.evaluate((el) => el === document.activeElement);
  /** Presses Tab until `locator` has the focus (at most 30 times). */
  async function tabTo(locator: Locator) {
    for (let i = 0; i < 30 && !(await focused(locator)); i++) await page.keyboard.press("Tab");
    expect(await focused(locator)).toBe(true);
  }

  await page.keyboard.press("Tab");
  expect(await focused(page.getByRole("link", { name: "Skip to content" }))).toBe(true);
  const roomBox = page.getByRole("textbox", { name: "Room", exact: true });
  await tabTo(roomBox);
  // A name the contract refuses is refused in the page, by the contract's own rule (protovalidate
  // on the generated descriptors, its chunk loaded on demand), before any call.
  await page.keyboard.type("no spaces!");
  await page.keyboard.press("Enter");
  await expect.poll(() => roomBox.getAttribute("aria-invalid"), SOON).toBe("true");
  await page.getByText(/Use 1 to 64 of/).waitFor();
  expect(new URL(page.url()).pathname).toBe("/");
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.press("Backspace");
  await page.keyboard.type("keyboard-only");
  await page.keyboard.press("Enter");
  await expect.poll(() => feedStatus(page), SOON).toBe("live");

  await tabTo(page.getByRole("textbox", { name: "Message", exact: true }));
  await page.keyboard.type("typed without a mouse");
  await page.keyboard.press("Enter");
  await feed(page).getByText("typed without a mouse").waitFor();

  await tabTo(page.getByRole("radio", { name: "Connect" }));
  await page.keyboard.press("ArrowRight");
  expect(await page.getByRole("radio", { name: "gRPC-Web" }).isChecked()).toBe(true);
  await expect.poll(() => feedStatus(page), SOON).toBe("live");
  // Joined by sending: the feed made again for the other protocol stays joined.
  expect(await page.getByRole("status", { name: "Presence" }).count()).toBe(0);
  await page.getByRole("combobox", { name: "Theme" }).selectOption("dark");
  await screenshot(page, "room-1280-dark");
  await page.close();
});

it("works at 375 px wide, in the dark theme too", async () => {
  const narrow = await browser.newContext({
    viewport: { width: 375, height: 740 },
    locale: "en-GB",
  });
  const { page } = await openRoom("pair-connect", "erin", "connect", narrow);
  await send(
    page,
    "a long message that has to wrap on a narrow screen, with a verylongwordwithoutanyspacesthatmustnotoverflowthescreen 🎉",
  );
  await feed(page)
    .getByText(/a long message/)
    .waitFor();
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - window.innerWidth,
  );
  expect(overflow).toBeLessThanOrEqual(0);
  await screenshot(page, "room-375");

  await page.getByRole("link", { name: "← Rooms" }).click();
  await page.getByRole("textbox", { name: "Room", exact: true }).waitFor();
  await screenshot(page, "rooms-375");
  await page.getByRole("link", { name: "Metrics" }).click();
  await expect.poll(() => page.locator(".uplot canvas").count(), SOON).toBe(5);
  await expect.poll(() => sampleCount(page), SOON).toBeGreaterThan(2);
  await screenshot(page, "metrics-375");
  await page.getByRole("link", { name: "Logs" }).click();
  await page
    .getByRole("log", { name: "Server log" })
    .getByText(/listening/)
    .first()
    .waitFor();
  await screenshot(page, "logs-375");

  await page.getByRole("combobox", { name: "Theme" }).selectOption("dark");
  await page.getByRole("link", { name: "Rooms" }).click();
  await page.getByRole("link", { name: /#pair-connect/ }).click();
  await feed(page)
    .getByText(/a long message/)
    .waitFor();
  await screenshot(page, "room-375-dark");
  await narrow.close();
});
