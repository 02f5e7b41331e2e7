import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { LogEntrySchema, LogLevel } from "@switchboard/proto/gen/chat/log_pb";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it } from "vitest";
import { LogTail } from "../lib/log-tail.svelte.ts";
import { FakeServer } from "../testing/fake-server.ts";
import LogsPage from "./LogsPage.svelte";

const line = (
  message: string,
  level = LogLevel.INFO,
  fields: Record<string, string | number> | undefined = undefined,
) =>
  create(LogEntrySchema, {
    message,
    level,
    time: timestampNow(),
    timestamp: 1n,
    ...(fields === undefined ? {} : { fields }),
  });

describe("LogsPage", () => {
  const logs = new LogTail();
  afterEach(() => logs.stop());

  it("tails the log live, filters by level and pauses", async () => {
    const user = userEvent.setup();
    const server = new FakeServer();
    server.log(line("debug detail", LogLevel.DEBUG));
    server.log(line("started"));
    render(LogsPage, { connection: server.connection(), logs });
    const tail = screen.getByRole("log", { name: "Server log" });

    expect(await within(tail).findByText("started")).toBeInTheDocument();
    expect(within(tail).queryByText("debug detail")).toBeNull();
    server.log(line("something happened", LogLevel.WARN));
    expect(await within(tail).findByText("something happened")).toBeInTheDocument();

    // Minimum level: the tail reopens with that level's backlog.
    await user.selectOptions(screen.getByRole("combobox", { name: "Minimum level" }), "debug");
    expect(await within(tail).findByText("debug detail")).toBeInTheDocument();
    const request = server.calls.filter((c) => c.method === "StreamLogs").at(-1)?.request;
    expect(request).toMatchObject({ minLevel: LogLevel.DEBUG });

    // Pause holds new lines; resume shows them.
    const pause = screen.getByRole("button", { name: "Pause" });
    await user.click(pause);
    expect(screen.getByRole("button", { name: "Resume" })).toHaveAttribute("aria-pressed", "true");
    server.log(line("while paused"));
    await waitFor(() =>
      expect(screen.getByRole("status", { name: "Log stream status" })).toHaveTextContent("1 new"),
    );
    expect(within(tail).queryByText("while paused")).toBeNull();
    await user.click(screen.getByRole("button", { name: "Resume" }));
    expect(within(tail).getByText("while paused")).toBeInTheDocument();
  });

  it("hides the dashboard's own calls unless asked, and shows fields readably", async () => {
    const user = userEvent.setup();
    const server = new FakeServer();
    const rpc = (method: string, client?: string) =>
      line("rpc", LogLevel.INFO, {
        method: `/chat.ChatService/${method}`,
        protocol: "connect",
        code: "OK",
        durationMs: 1.25,
        peer: "127.0.0.1:5000",
        ...(client === undefined ? {} : { client }),
      });
    server.log(rpc("WatchRooms", "dashboard"));
    server.log(rpc("SendMessage"));
    server.log(line("store trouble", LogLevel.WARN, { context: "feed", attempt: 2 }));
    const own = new LogTail();
    render(LogsPage, { connection: server.connection(), logs: own });
    const tail = screen.getByRole("log", { name: "Server log" });

    // Readable: "SendMessage OK 1.25 ms" and key=value, never a JSON object.
    const send = await within(tail).findByText("SendMessage OK 1.25 ms");
    const item = send.closest("li") as HTMLElement;
    expect(item).toHaveTextContent("protocol=connect");
    expect(item).toHaveTextContent("peer=127.0.0.1:5000");
    expect(item).toHaveTextContent("service=chat.ChatService");
    expect((await within(tail).findByText("store trouble")).closest("li")).toHaveTextContent(
      /context=feed\s+attempt=2/,
    );
    expect(tail).not.toHaveTextContent("{");
    // The dashboard's own calls are hidden by default.
    expect(within(tail).queryByText(/^WatchRooms/)).toBeNull();
    const show = screen.getByRole("checkbox", { name: "Show the dashboard’s own calls" });
    expect(show).not.toBeChecked();
    await user.click(show);
    expect(await within(tail).findByText("WatchRooms OK 1.25 ms")).toBeInTheDocument();
    await user.click(show);
    await waitFor(() => expect(within(tail).queryByText(/^WatchRooms/)).toBeNull());
    own.stop();
  });
});
