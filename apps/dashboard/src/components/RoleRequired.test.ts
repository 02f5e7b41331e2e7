import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { LogEntrySchema, LogLevel } from "@switchboard/proto/gen/chat/log_pb";
import { render, screen, within } from "@testing-library/svelte";
import { afterEach, describe, expect, it } from "vitest";
import { LogTail } from "../lib/log-tail.svelte.ts";
import { MetricsHistory } from "../lib/metrics.svelte.ts";
import { FakeServer } from "../testing/fake-server.ts";
import LogsPage from "./LogsPage.svelte";

/** What the server answers a token without the admin role (apps/server's auth interceptor). */
const refusal = (method: string) =>
  new ConnectError(
    `${method} needs the admin role: the token of alice has no "admin" in its roles claim`,
    Code.PermissionDenied,
  );

/** Calls of `method` the server received so far. */
const callsOf = (server: FakeServer, method: string) =>
  server.calls.filter((c) => c.method === method).length;

describe("a token without the admin role", () => {
  const logs = new LogTail();
  const metrics = new MetricsHistory();
  afterEach(() => {
    logs.stop();
    metrics.stop();
  });

  it("Logs says the page needs the admin role, and does not retry", async () => {
    const server = new FakeServer();
    server.failures.set("StreamLogs", refusal("chat.LogService/StreamLogs"));
    render(LogsPage, { connection: server.connection(), logs });

    const notice = await screen.findByRole("region", { name: "This page needs the admin role" });
    expect(notice).toHaveTextContent(
      'The server refused StreamLogs for the token in use: permission_denied: chat.LogService/StreamLogs needs the admin role: the token of alice has no "admin" in its roles claim',
    );
    expect(within(notice).getByText("switchboard token --sub NAME --roles admin")).toBeVisible();
    expect(screen.getByRole("status", { name: "Log stream status" })).toHaveTextContent(
      "not allowed",
    );
    expect(screen.queryByText("No log lines at this level yet.")).toBeNull();
    // Waiting out a backoff would open it again within 250 ms; a refusal is not retried.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(callsOf(server, "StreamLogs")).toBe(1);
  });

  it("the metrics history stops with the refusal instead of retrying", async () => {
    // MetricsPage shows the same notice for it (its charts need a real browser: the Chromium
    // test apps/dashboard/test/roles.e2e.test.ts).
    const server = new FakeServer();
    server.failures.set("StreamMetrics", refusal("chat.ChatService/StreamMetrics"));
    metrics.start(server.connection().chat);
    await expect.poll(() => metrics.state).toBe("denied");
    expect(metrics.refusal?.code).toBe(Code.PermissionDenied);
    expect(metrics.refusal?.rawMessage).toMatch(/needs the admin role/);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(callsOf(server, "StreamMetrics")).toBe(1);
  });

  it("a failure that retrying can fix is still retried", async () => {
    const server = new FakeServer();
    server.failures.set("StreamLogs", new ConnectError("busy", Code.Unavailable));
    render(LogsPage, { connection: server.connection(), logs });
    await expect.poll(() => callsOf(server, "StreamLogs"), { timeout: 3_000 }).toBeGreaterThan(1);
    expect(screen.queryByRole("region", { name: /needs the/ })).toBeNull();
  });
});

describe("no token", () => {
  const logs = new LogTail();
  afterEach(() => logs.stop());

  it("Logs says the page needs an access token, with the server's reason, until one is accepted", async () => {
    const server = new FakeServer();
    server.requiredToken = "s3cret";
    server.log(create(LogEntrySchema, { message: "started", level: LogLevel.INFO, timestamp: 1n }));
    const connection = server.connection();
    render(LogsPage, { connection, logs });

    const notice = await screen.findByRole("region", { name: "This page needs an access token" });
    expect(notice).toHaveTextContent(
      "The server refused StreamLogs: unauthenticated: missing or invalid bearer token",
    );
    expect(screen.queryByText("No log lines at this level yet.")).toBeNull();
    connection.token = "s3cret";
    const tail = screen.getByRole("log", { name: "Server log" });
    expect(await within(tail).findByText("started")).toBeInTheDocument();
    expect(screen.queryByRole("region", { name: /needs/ })).toBeNull();
  });
});
