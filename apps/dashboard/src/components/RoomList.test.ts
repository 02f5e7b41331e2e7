import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { Identity } from "../lib/identity.svelte.ts";
import { RoomDirectory } from "../lib/room-directory.svelte.ts";
import { FakeServer } from "../testing/fake-server.ts";
import RoomList from "./RoomList.svelte";

describe("RoomList", () => {
  it("lists rooms with message and member counts, and unread counts for rooms not in view", async () => {
    const server = new FakeServer();
    server.append("general", "bob", "hi");
    server.append("ops", "bob", "deploying");
    const directory = new RoomDirectory();
    const client = server.connection().chat;
    await directory.refresh(); // no client yet: nothing happens
    directory.start(client);
    render(RoomList, {
      directory,
      identity: new Identity("alice"),
      current: "general",
      onnavigate: () => {},
    });
    directory.setCurrent("general");

    const ops = await screen.findByRole("link", { name: /#ops/ });
    expect(ops).toHaveTextContent("1 message · 0 members online");

    server.append("ops", "bob", "done");
    server.append("ops", "bob", "bob left", 2);
    server.append("general", "bob", "in view");
    await directory.refresh();
    await waitFor(() => expect(within(ops).getByText(/unread/)).toBeInTheDocument());
    // JOIN and LEAVE never count as unread; the room in view never has any.
    expect(ops).toHaveTextContent("1 unread");
    expect(directory.totalUnread).toBe(1);
    expect(screen.getByRole("link", { name: /#general/ })).not.toHaveTextContent("unread");
    expect(screen.getByRole("link", { name: /#general/ })).toHaveAttribute("aria-current", "page");

    directory.markSeen("ops", 3n);
    await waitFor(() => expect(ops).not.toHaveTextContent("unread"));
    directory.stop();
  });

  it("joins or creates a room by name from the input labelled Room", async () => {
    const user = userEvent.setup();
    const onnavigate = vi.fn();
    render(RoomList, {
      directory: new RoomDirectory(),
      identity: new Identity("alice"),
      current: undefined,
      onnavigate,
    });
    const input = screen.getByRole("textbox", { name: "Room" });

    await user.type(input, "no spaces allowed{Enter}");
    expect(onnavigate).not.toHaveBeenCalled();
    expect(input).toHaveAttribute("aria-invalid", "true");
    expect(screen.getByText(/Use 1 to 64 of/)).toBeInTheDocument();

    await user.clear(input);
    await user.type(input, "new-room.1{Enter}");
    expect(onnavigate).toHaveBeenCalledWith("/rooms/new-room.1");
  });

  it("changes the viewer's name from the field labelled Your name", async () => {
    const user = userEvent.setup();
    const identity = new Identity("alice");
    render(RoomList, {
      directory: new RoomDirectory(),
      identity,
      current: undefined,
      onnavigate: () => {},
    });
    const input = screen.getByRole("textbox", { name: "Your name" });
    await user.clear(input);
    await user.type(input, "  Zoë 🚀 {Enter}");
    expect(identity.name).toBe("Zoë 🚀");
  });
});
