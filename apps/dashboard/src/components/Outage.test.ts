import { Code, ConnectError } from "@connectrpc/connect";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { Identity } from "../lib/identity.svelte.ts";
import { RoomDirectory } from "../lib/room-directory.svelte.ts";
import { FakeServer, serverError } from "../testing/fake-server.ts";
import ConnectionState from "./ConnectionState.svelte";
import FailureList from "./FailureList.svelte";
import RoomList from "./RoomList.svelte";
import RoomView from "./RoomView.svelte";

const SLOW = { timeout: 8000 };

describe("an outage", () => {
  it("is one state: reconnecting (attempt n), no banners, presence unknown, then live", async () => {
    const server = new FakeServer();
    server.append("general", "bob", "before the outage");
    const connection = server.connection();
    const directory = new RoomDirectory();
    directory.start(connection.chat);
    render(ConnectionState, { connection });
    render(FailureList, { connection });
    render(RoomList, {
      directory,
      identity: new Identity("alice"),
      current: "general",
      onnavigate: () => {},
    });
    render(RoomView, {
      connection,
      directory,
      room: "general",
      user: "alice",
      onnavigate: () => {},
    });
    const state = screen.getByRole("status", { name: "Connection" });
    const feedStatus = screen.getByRole("status", { name: "Feed status" });
    const members = screen.getByRole("list", { name: "Members" });
    await waitFor(() => expect(feedStatus).toHaveTextContent("live"));
    // Looking is not joining: alice is not a member until she joins (or sends).
    const presence = screen.getByRole("status", { name: "Presence" });
    expect(presence).toHaveTextContent("Watching without joining");
    expect(within(members).queryByText("alice")).toBeNull();
    within(presence).getByRole("button", { name: "Join room" }).click();
    await waitFor(() => expect(within(members).getByText("alice")).toBeInTheDocument());
    expect(screen.queryByRole("status", { name: "Presence" })).toBeNull();
    expect(members.closest("details")).toHaveTextContent(/alice.*, online/);
    expect(state).toHaveTextContent("Live");

    // A failure of the kind a dying connection gives, just before the outage: listed for now.
    server.failures.set(
      "ListMembers",
      serverError("protocol error: missing EndStreamResponse", Code.Unknown),
    );
    await expect(connection.chat.listMembers({ room: "general" })).rejects.toThrow();
    server.failures.delete("ListMembers");
    expect(await screen.findByRole("alert")).toHaveTextContent(/ListMembers\s+failed/);

    server.goDown();
    await waitFor(() => expect(state).toHaveTextContent(/Reconnecting \(attempt \d+\)/));
    await waitFor(() => expect(feedStatus).toHaveTextContent("reconnecting"));
    // A refused connection reads as unavailable, for every caller.
    const refused = await connection.chat.listRooms({}).catch((err: unknown) => err);
    expect(ConnectError.from(refused).code).toBe(Code.Unavailable);
    expect(ConnectError.from(refused).rawMessage).toBe("Failed to fetch");
    // The outage is shown once, as a state: no banner, the earlier symptom cleared too.
    expect(screen.queryAllByRole("alert")).toHaveLength(0);
    // Nobody is shown as online while presence cannot be known.
    const panel = members.closest("details") as HTMLElement;
    expect(panel).toHaveTextContent("Presence unknown while reconnecting");
    expect(panel).not.toHaveTextContent(", online");
    expect(within(members).getByText("alice").closest("li")).toHaveAttribute(
      "data-presence",
      "unknown",
    );
    // Attempts count up while it lasts.
    await waitFor(() => expect(state).toHaveTextContent(/attempt [2-9]/), SLOW);
    expect(screen.queryAllByRole("alert")).toHaveLength(0);

    // A message typed during the outage is kept and sent once the room is live again.
    const user = userEvent.setup();
    const box = screen.getByRole("textbox", { name: "Message" });
    await user.type(box, "typed during the outage{Enter}");
    expect(box).toHaveValue("");
    await waitFor(() =>
      expect(screen.getByRole("status", { name: "Sending" })).toHaveTextContent(
        /Sending 1 message…/,
      ),
    );
    expect(screen.queryAllByRole("alert")).toHaveLength(0);

    server.append("general", "bob", "during the outage");
    server.comeBack();
    await waitFor(() => expect(state).toHaveTextContent("Live"), SLOW);
    await waitFor(() => expect(feedStatus).toHaveTextContent("live"), SLOW);
    const feed = screen.getByRole("log", { name: "Feed of #general" });
    await within(feed).findByText("during the outage", {}, SLOW);
    expect(within(feed).getAllByText("during the outage")).toHaveLength(1);
    await within(feed).findByText("typed during the outage", {}, SLOW);
    expect(within(feed).getAllByText("typed during the outage")).toHaveLength(1);
    await waitFor(() => expect(screen.queryByRole("status", { name: "Sending" })).toBeNull());
    const sends = server.calls.filter((c) => c.method === "SendMessage");
    expect(
      new Set(sends.map((c) => (c.request as { clientMessageId: string }).clientMessageId)).size,
    ).toBe(1);
    await waitFor(() => expect(panel).toHaveTextContent(/alice.*, online/));
    expect(panel).not.toHaveTextContent("Presence unknown");
    expect(screen.queryAllByRole("alert")).toHaveLength(0);
    // Every call said who made it, for the server's access log.
    expect(server.headers.every((h) => h.get("x-switchboard-client") === "dashboard")).toBe(true);
    directory.stop();
  });

  it("a failure the server answered still shows, and clears only when dismissed", async () => {
    const server = new FakeServer();
    const connection = server.connection();
    render(FailureList, { connection });
    server.failures.set("ListRooms", serverError("no", Code.PermissionDenied));
    await expect(connection.chat.listRooms({})).rejects.toThrow();
    expect(await screen.findByRole("alert")).toHaveTextContent("permission_denied");
    server.goDown();
    await expect(connection.chat.listRooms({})).rejects.toThrow();
    server.comeBack();
    await waitFor(() => expect(connection.reachability).toBe("online"), SLOW);
    expect(screen.getByRole("alert")).toHaveTextContent("permission_denied");
  });
});
