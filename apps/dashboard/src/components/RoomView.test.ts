import { Code } from "@connectrpc/connect";
import { MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { RoomDirectory } from "../lib/room-directory.svelte.ts";
import { FakeServer, serverError } from "../testing/fake-server.ts";
import FailureList from "./FailureList.svelte";
import RoomView from "./RoomView.svelte";

function setup(server = new FakeServer()) {
  const connection = server.connection();
  render(RoomView, {
    connection,
    directory: new RoomDirectory(),
    room: "general",
    user: "alice",
    onnavigate: () => {},
  });
  render(FailureList, { connection });
  const feed = () => screen.getByRole("log", { name: "Feed of #general" });
  return { server, connection, feed };
}

describe("RoomView", () => {
  it("shows history, then live messages, as text and never as HTML", async () => {
    const server = new FakeServer();
    server.append("general", "bob", "older message");
    const { feed } = setup(server);

    expect(await within(feed()).findByText("older message")).toBeInTheDocument();
    await waitFor(() =>
      expect(screen.getByRole("status", { name: "Feed status" })).toHaveTextContent("live"),
    );

    server.append("general", "bob", "<img src=x onerror=alert(1)> <b>bold?</b>");
    const item = await within(feed()).findByText("<img src=x onerror=alert(1)> <b>bold?</b>");
    expect(item.querySelector("img, b")).toBeNull();
    expect(item).toHaveAttribute("dir", "auto");
  });

  it("shows JOIN and LEAVE inline and keeps the member list live from them", async () => {
    const { server, feed } = setup();
    // Opening the room only watches it: alice joins when she asks to.
    (await screen.findByRole("button", { name: "Join room" })).click();
    await within(feed()).findByText("alice", { selector: "bdi" });
    const members = screen.getByRole("list", { name: "Members" });
    await waitFor(() => expect(within(members).getByText("alice")).toBeInTheDocument());

    server.append("general", "carol", "carol joined", MessageType.JOIN);
    await waitFor(() => expect(within(members).getByText("carol")).toBeInTheDocument());
    expect(within(feed()).getByText("carol").closest("li")).toHaveTextContent(/carol\s+joined/);

    server.append("general", "carol", "carol left", MessageType.LEAVE);
    await waitFor(() => expect(within(members).queryByText("carol")).toBeNull());
    expect(within(feed()).getAllByText("carol")).toHaveLength(2);
  });

  it("sends on Enter, adds a line on Shift+Enter", async () => {
    const user = userEvent.setup();
    const { server, feed } = setup();
    const box = screen.getByRole("textbox", { name: "Message" });
    await user.type(box, "first line{Shift>}{Enter}{/Shift}second line");
    expect(box).toHaveValue("first line\nsecond line");
    expect(server.calls.filter((c) => c.method === "SendMessage")).toHaveLength(0);

    await user.keyboard("{Enter}");
    await waitFor(() => expect(box).toHaveValue(""));
    const sent = server.calls.find((c) => c.method === "SendMessage")?.request as {
      content: string;
      room: string;
      user: string;
      clientMessageId: string;
    };
    expect(sent).toMatchObject({
      content: "first line\nsecond line",
      room: "general",
      user: "alice",
    });
    expect(sent.clientMessageId).not.toBe("");
    expect(await within(feed()).findByText(/first line\s+second line/)).toBeInTheDocument();
  });

  it("shows a failed send's Connect code and message, and keeps the draft", async () => {
    const user = userEvent.setup();
    const { server } = setup();
    server.failures.set(
      "SendMessage",
      serverError("content is 5000 bytes, over MAX_CONTENT_BYTES (4096)", Code.InvalidArgument),
    );
    const box = screen.getByRole("textbox", { name: "Message" });
    await user.type(box, "too long{Enter}");

    const alerts = await screen.findAllByRole("alert");
    const text = alerts.map((a) => a.textContent).join("\n");
    expect(text).toContain(
      "invalid_argument: content is 5000 bytes, over MAX_CONTENT_BYTES (4096)",
    );
    expect(text).toMatch(/SendMessage\s+failed/);
    expect(box).toHaveValue("too long");
  });

  it("loads older messages with GetHistory", async () => {
    const user = userEvent.setup();
    const server = new FakeServer();
    for (let i = 1; i <= 60; i++) server.append("general", "bob", `message ${i}`);
    const { feed } = setup(server);
    await within(feed()).findByText("message 60");
    expect(within(feed()).queryByText("message 10")).toBeNull();

    await user.click(within(feed()).getByRole("button", { name: "Load older messages" }));
    expect(await within(feed()).findByText("message 10")).toBeInTheDocument();
    expect(within(feed()).getByText("Start of #general")).toBeInTheDocument();
    // Each message once.
    expect(within(feed()).getAllByText(/^message \d+$/)).toHaveLength(60);
  });
});
