import { render, screen } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { FakeServer } from "../testing/fake-server.ts";
import FailureList from "./FailureList.svelte";
import TokenForm from "./TokenForm.svelte";

describe("TokenForm", () => {
  it("asks for a token only when the server refuses a call, then sends it with every call", async () => {
    const user = userEvent.setup();
    const server = new FakeServer();
    server.requiredToken = "s3cret";
    const connection = server.connection();
    render(TokenForm, { connection });
    render(FailureList, { connection });
    expect(screen.queryByLabelText("Access token")).toBeNull();

    await expect(connection.chat.listRooms({})).rejects.toThrow(/bearer token/);
    // Said once, by the form, with the server's words: not also listed as a failed call.
    expect(await screen.findByText("missing or invalid bearer token")).toBeInTheDocument();
    expect(screen.queryByText("unauthenticated")).toBeNull();
    await user.type(await screen.findByLabelText("Access token"), "s3cret{Enter}");

    expect(connection.token).toBe("s3cret");
    await expect(connection.chat.listRooms({})).resolves.toBeDefined();
    expect(screen.queryByLabelText("Access token")).toBeNull();
    await user.click(screen.getByRole("button", { name: "Forget token" }));
    expect(connection.token).toBe("");
  });
});
