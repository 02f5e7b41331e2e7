import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { Identity } from "../lib/identity.svelte.ts";
import { RoomDirectory } from "../lib/room-directory.svelte.ts";
import { FakeServer } from "../testing/fake-server.ts";
import RoomList from "./RoomList.svelte";

describe("RoomList", () => {
  it("lists rooms pushed by WatchRooms, with counts and unread counts for rooms not in view", async () => {
    const server = new FakeServer();
    server.append("general", "bob", "hi");
    server.append("ops", "bob", "deploying");
    const directory = new RoomDirectory();
    const client = server.connection().chat;
    directory.start(client);
    render(RoomList, {
      directory,
      identity: new Identity("alice"),
      current: "general",
      onnavigate: () => {},
    });
    directory.setCurrent("general");

    const ops = await screen.findByRole("link", { name: /#ops/ });
    expect(ops).toHaveTextContent("1 message · 0 members");

    // Pushed, not polled: the changes arrive without any ListRooms.
    server.append("ops", "bob", "done");
    server.append("ops", "bob", "bob left", 2);
    server.append("general", "bob", "in view");
    await waitFor(() => expect(within(ops).getByText(/unread/)).toBeInTheDocument());
    // JOIN and LEAVE never count as unread; the room in view never has any.
    await waitFor(() => expect(ops).toHaveTextContent("1 unread"));
    expect(directory.totalUnread).toBe(1);
    expect(screen.getByRole("link", { name: /#general/ })).not.toHaveTextContent("unread");
    expect(screen.getByRole("link", { name: /#general/ })).toHaveAttribute("aria-current", "page");
    expect(server.calls.filter((c) => c.method === "ListRooms")).toHaveLength(0);
    expect(server.calls.filter((c) => c.method === "WatchRooms")).toHaveLength(1);

    // A new room appears as it is created.
    server.append("brand-new", "carol", "first");
    expect(await screen.findByRole("link", { name: /#brand-new/ })).toBeInTheDocument();

    directory.markSeen("ops", 3n);
    await waitFor(() => expect(ops).not.toHaveTextContent("unread"));
    directory.stop();
  });

  it("counts a reset room's new log as unread from its start: what was seen is gone", async () => {
    const server = new FakeServer();
    for (let i = 1; i <= 5; i++) server.append("ops", "bob", `old ${i}`);
    const directory = new RoomDirectory();
    directory.start(server.connection().chat);
    render(RoomList, {
      directory,
      identity: new Identity("alice"),
      current: undefined,
      onnavigate: () => {},
    });
    const ops = await screen.findByRole("link", { name: /#ops/ });
    directory.markSeen("ops", 5n, server.epochOf("ops"));
    // The server lost the room's history; its new log has 3 messages, below the offset seen.
    server.resetRoom("ops");
    for (let i = 1; i <= 3; i++) server.append("ops", "bob", `new ${i}`);
    await waitFor(() => expect(ops).toHaveTextContent("3 unread"));
    // Seen in the new log: nothing unread.
    directory.markSeen("ops", 3n, server.epochOf("ops"));
    await waitFor(() => expect(ops).not.toHaveTextContent("unread"));
    directory.stop();
  });

  it("counts members as users, with connections on hover, as the room's panel does", async () => {
    const server = new FakeServer();
    server.append("general", "bob", "hi");
    const connection = server.connection();
    const directory = new RoomDirectory();
    directory.start(connection.chat);
    render(RoomList, {
      directory,
      identity: new Identity("alice"),
      current: undefined,
      onnavigate: () => {},
    });
    // alice in two tabs, bob in one: 2 members, 3 connections.
    const tabs = new AbortController();
    for (const user of ["alice", "alice", "bob"]) {
      void (async () => {
        try {
          for await (const _ of connection.chat.subscribeMessages(
            { room: "general", user },
            { signal: tabs.signal },
          ));
        } catch {}
      })();
    }
    const general = await screen.findByRole("link", { name: /#general/ });
    await waitFor(() => expect(general).toHaveTextContent(/· 2 members$/));
    expect(general).not.toHaveTextContent(/3 members|online/);
    expect(within(general).getByText(/2 members/)).toHaveAttribute(
      "title",
      "3 connections (open subscriptions)",
    );
    tabs.abort();
    directory.stop();
  });

  it("closes the stream in a hidden tab and reads the list rarely instead, then streams again", async () => {
    const server = new FakeServer();
    server.append("general", "bob", "hi");
    const directory = new RoomDirectory();
    directory.start(server.connection().chat);
    const count = (method: string) => server.calls.filter((c) => c.method === method).length;
    await waitFor(() => expect(directory.loaded).toBe(true));
    expect(count("WatchRooms")).toBe(1);
    const setVisibility = (state: DocumentVisibilityState) => {
      Object.defineProperty(document, "visibilityState", { value: state, configurable: true });
      document.dispatchEvent(new Event("visibilitychange"));
    };
    try {
      setVisibility("hidden");
      await waitFor(() => expect(count("ListRooms")).toBe(1));
      // The stream is closed: its watcher is gone from the server.
      server.append("general", "bob", "while hidden");
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(directory.rooms[0]?.lastOffset).toBe(1n);
      setVisibility("visible");
      await waitFor(() => expect(count("WatchRooms")).toBe(2));
      await waitFor(() => expect(directory.rooms[0]?.lastOffset).toBe(2n));
      expect(count("ListRooms")).toBe(1);
    } finally {
      Reflect.deleteProperty(document, "visibilityState");
      directory.stop();
    }
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
