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

/** An RPC line's summary ("SendMessage OK 1.25 ms"), whose method and code are styled apart. */
const summary =
  (text: string | RegExp) =>
  (_: string, element: Element | null): boolean => {
    if (element?.classList.contains("msg") !== true) return false;
    const content = (element.textContent ?? "").replace(/\s+/g, " ").trim();
    return typeof text === "string" ? content === text : text.test(content);
  };

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
    const send = await within(tail).findByText(summary("SendMessage OK 1.25 ms"));
    const item = send.closest("li") as HTMLElement;
    expect(item).toHaveTextContent("protocol=connect");
    expect(item).toHaveTextContent("peer=127.0.0.1:5000");
    expect(item).toHaveTextContent("service=chat.ChatService");
    expect((await within(tail).findByText("store trouble")).closest("li")).toHaveTextContent(
      /context=feed\s+attempt=2/,
    );
    expect(tail).not.toHaveTextContent("{");
    // The dashboard's own calls are hidden by default.
    expect(within(tail).queryByText(summary(/^WatchRooms/))).toBeNull();
    const show = screen.getByRole("checkbox", { name: "Show the dashboard’s own calls" });
    expect(show).not.toBeChecked();
    await user.click(show);
    expect(await within(tail).findByText(summary("WatchRooms OK 1.25 ms"))).toBeInTheDocument();
    await user.click(show);
    await waitFor(() => expect(within(tail).queryByText(summary(/^WatchRooms/))).toBeNull());
    own.stop();
  });

  it("colours calls by code, filters them by method, code and user, and shortens request ids", async () => {
    const user = userEvent.setup();
    const server = new FakeServer();
    const call = (method: string, code: string, who: string, requestId: string) =>
      line("rpc", LogLevel.INFO, {
        method: `/chat.ChatService/${method}`,
        protocol: "connect",
        code,
        durationMs: 2,
        user: who,
        requestId,
      });
    server.log(call("SendMessage", "OK", "alice", "0f8fad5b-d9cb-469f-a165-70867728950e"));
    server.log(
      call("SendMessage", "InvalidArgument", "bob", "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
    );
    server.log(call("GetHistory", "Internal", "alice", "short-id"));
    server.log(line("store trouble", LogLevel.ERROR));
    const tail = new LogTail();
    render(LogsPage, { connection: server.connection(), logs: tail });
    const log = screen.getByRole("log", { name: "Server log" });
    const item = async (text: string) =>
      (await within(log).findByText(summary(text))).closest("li") as HTMLElement;

    const ok = await item("SendMessage OK 2 ms");
    const refused = await item("SendMessage InvalidArgument 2 ms");
    const fault = await item("GetHistory Internal 2 ms");
    expect(ok.dataset.code).toBe("ok");
    expect(refused.dataset.code).toBe("client");
    expect(fault.dataset.code).toBe("server");
    expect(
      ((await within(log).findByText("store trouble")).closest("li") as HTMLElement).dataset.level,
    ).toBe("error");
    // A request id: its first 8 characters, the whole id on hover; a short one whole.
    const id = within(ok).getByTitle("request id 0f8fad5b-d9cb-469f-a165-70867728950e");
    expect(id).toHaveTextContent("0f8fad5b…");
    expect(ok).not.toHaveTextContent("d9cb-469f");
    expect(within(fault).getByTitle("request id short-id")).toHaveTextContent("short-id");
    // The user is a field.
    expect(ok).toHaveTextContent("user=alice");

    const visible = () =>
      within(log)
        .queryAllByRole("listitem")
        .map((li) => li.querySelector(".msg")?.textContent?.replace(/\s+/g, " ").trim());
    await user.selectOptions(screen.getByRole("combobox", { name: "Code" }), "failures (not OK)");
    expect(visible()).toEqual(["SendMessage InvalidArgument 2 ms", "GetHistory Internal 2 ms"]);
    await user.selectOptions(screen.getByRole("combobox", { name: "User" }), "alice");
    expect(visible()).toEqual(["GetHistory Internal 2 ms"]);
    await user.selectOptions(screen.getByRole("combobox", { name: "Code" }), "any");
    expect(visible()).toEqual(["SendMessage OK 2 ms", "GetHistory Internal 2 ms"]);
    await user.selectOptions(screen.getByRole("combobox", { name: "Method" }), "SendMessage");
    expect(visible()).toEqual(["SendMessage OK 2 ms"]);
    await user.selectOptions(screen.getByRole("combobox", { name: "User" }), "bob");
    expect(visible()).toEqual(["SendMessage InvalidArgument 2 ms"]);
    // New lines are filtered as they come.
    server.log(call("SendMessage", "OK", "bob", "b0b"));
    await waitFor(() =>
      expect(visible()).toEqual(["SendMessage InvalidArgument 2 ms", "SendMessage OK 2 ms"]),
    );
    // No filter: every line again, the non-RPC ones too.
    for (const name of ["Method", "User"])
      await user.selectOptions(screen.getByRole("combobox", { name }), "any");
    expect(visible()).toHaveLength(5);
    tail.stop();
  });
});
