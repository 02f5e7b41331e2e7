import { render, screen } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { Theme } from "../lib/theme.svelte.ts";
import { FakeServer } from "../testing/fake-server.ts";
import ConnectionBar from "./ConnectionBar.svelte";
import ConnectionState from "./ConnectionState.svelte";

describe("ConnectionBar", () => {
  it("chooses Connect or gRPC-Web and the theme, and always shows the connection", async () => {
    const user = userEvent.setup();
    const server = new FakeServer();
    const connection = server.connection("connect");
    const theme = new Theme();
    render(ConnectionBar, { connection, theme });
    render(ConnectionState, { connection });

    const status = screen.getByRole("status", { name: "Connection" });
    expect(status).toHaveTextContent("Connecting… via Connect");
    await connection.chat.listRooms({});
    expect(status).toHaveTextContent("Live via Connect");

    const before = connection.chat;
    await user.click(screen.getByRole("radio", { name: "gRPC-Web" }));
    expect(connection.protocol).toBe("grpcweb");
    expect(connection.chat).not.toBe(before);
    expect(status).toHaveTextContent("via gRPC-Web");

    await user.selectOptions(screen.getByRole("combobox", { name: "Theme" }), "dark");
    expect(document.documentElement.dataset.theme).toBe("dark");
  });
});
