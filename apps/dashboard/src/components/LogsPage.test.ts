import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { LogEntrySchema, LogLevel } from "@switchboard/proto/gen/chat/log_pb";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it } from "vitest";
import { LogTail } from "../lib/log-tail.svelte.ts";
import { FakeServer } from "../testing/fake-server.ts";
import LogsPage from "./LogsPage.svelte";

const line = (message: string, level = LogLevel.INFO) =>
  create(LogEntrySchema, { message, level, time: timestampNow(), timestamp: 1n });

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
});
