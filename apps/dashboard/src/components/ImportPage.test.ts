import { render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { Identity } from "../lib/identity.svelte.ts";
import { FakeServer } from "../testing/fake-server.ts";
import ImportPage from "./ImportPage.svelte";

describe("ImportPage", () => {
  it("sends a picked JSON Lines file as messages with a progress bar", async () => {
    const user = userEvent.setup();
    const server = new FakeServer();
    render(ImportPage, { connection: server.connection(), identity: new Identity("alice") });
    const lines = [
      JSON.stringify({ user: "ada", content: "first" }),
      JSON.stringify({ content: "second", room: "ops" }),
      "{broken",
    ];
    const file = new File([lines.join("\n")], "export.jsonl", { type: "application/x-ndjson" });

    await user.upload(screen.getByLabelText("JSON Lines file"), file);
    await user.clear(screen.getByRole("textbox", { name: "Target room" }));
    await user.type(screen.getByRole("textbox", { name: "Target room" }), "archive");
    await user.click(screen.getByRole("button", { name: "Import" }));

    const progress = await screen.findByRole("progressbar", { name: "Import progress" });
    await waitFor(() => expect(screen.getByText(/2 of 3 sent, 1 failed/)).toBeInTheDocument());
    expect(progress).toHaveAttribute("value", "3");
    expect(progress).toHaveAttribute("max", "3");
    expect(screen.getByText(/Line 3:/)).toBeInTheDocument();
    expect(server.rooms.get("archive")?.map((m) => [m.user, m.content])).toEqual([
      ["ada", "first"],
    ]);
    expect(server.rooms.get("ops")?.map((m) => [m.user, m.content])).toEqual([["alice", "second"]]);
  });
});
