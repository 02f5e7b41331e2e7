import { Code } from "@connectrpc/connect";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import App from "../App.svelte";
import { subjectOf } from "../lib/connection.svelte.ts";
import { Identity } from "../lib/identity.svelte.ts";
import { Router } from "../lib/router.svelte.ts";
import { FakeServer, serverError } from "../testing/fake-server.ts";

// uPlot (the Metrics page's charts, imported with App) reads matchMedia when loaded; jsdom has none.
vi.hoisted(() => {
  globalThis.matchMedia ??= ((query: string) => ({
    matches: false,
    media: query,
    addEventListener() {},
    removeEventListener() {},
    addListener() {},
    removeListener() {},
  })) as unknown as typeof globalThis.matchMedia;
});

const SLOW = { timeout: 8000 };

/** An unsigned JWT-shaped token whose payload is `claims` (the fake server compares strings). */
function tokenFor(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2lnbmF0dXJl`;
}

afterEach(() => {
  sessionStorage.clear();
  localStorage.clear();
});

describe("subjectOf", () => {
  it("reads a JWT's sub claim, and nothing from a token without one or a non-JWT", () => {
    expect(subjectOf(tokenFor({ sub: "alice", roles: ["admin"] }))).toBe("alice");
    expect(subjectOf(tokenFor({ roles: ["admin"] }))).toBeUndefined();
    expect(subjectOf(tokenFor({ sub: "" }))).toBeUndefined();
    expect(subjectOf("not-a-jwt")).toBeUndefined();
  });
});

describe("the dashboard under authentication", () => {
  it("without a token: not Live, the room list says why; with one: Live, no banner, the subject as the name", async () => {
    const user = userEvent.setup();
    const server = new FakeServer();
    server.append("general", "bob", "hello");
    const token = tokenFor({ sub: "alice" });
    server.requiredToken = token;
    const connection = server.connection();
    render(App, { connection, router: new Router(), identity: new Identity("operator-1234") });

    const state = screen.getByRole("status", { name: "Connection" });
    await waitFor(() => expect(state).toHaveTextContent("Token needed"), SLOW);
    expect(state).not.toHaveTextContent("Live");
    expect(state).toHaveAttribute("data-state", "refused");
    expect(state.getAttribute("title")).toMatch(/unauthenticated: missing or invalid bearer token/);
    // The reason instead of "Loading rooms…".
    const reason = await screen.findByRole("alert", { name: "Room list error" });
    expect(reason).toHaveTextContent("unauthenticated: missing or invalid bearer token");
    expect(reason).toHaveTextContent("paste one above");
    expect(screen.queryByText("Loading rooms…")).toBeNull();
    // Said once, by the token form with the server's words, not by a banner per refused call.
    const failures = screen.getByRole("region", { name: "Failed calls" });
    expect(within(failures).queryByRole("alert")).toBeNull();
    expect(screen.getByText("missing or invalid bearer token", { selector: "code" })).toBeTruthy();
    // No subject yet: the chosen name is editable.
    expect(screen.getByRole("textbox", { name: "Your name" })).toHaveValue("operator-1234");

    // A wrong token is refused, and said to be.
    await user.type(
      screen.getByLabelText("Access token"),
      `${tokenFor({ sub: "mallory" })}{Enter}`,
    );
    await waitFor(() => expect(state).toHaveTextContent("Token refused"), SLOW);
    expect(
      await screen.findByText("The server refused this token. Paste another one."),
    ).toBeTruthy();
    expect(screen.queryByText("Signed in as")).toBeNull();

    await user.type(screen.getByLabelText("Access token"), `${token}{Enter}`);
    await waitFor(() => expect(state).toHaveTextContent("Live"), SLOW);
    await screen.findByRole("link", { name: /#general/ });
    // No banner about the missing token stays, nor the token form.
    expect(within(failures).queryByRole("alert")).toBeNull();
    expect(screen.queryByLabelText("Access token")).toBeNull();
    expect(screen.queryByRole("alert", { name: "Room list error" })).toBeNull();
    // The name field is replaced by the token's subject.
    expect(screen.queryByRole("textbox", { name: "Your name" })).toBeNull();
    expect(screen.getByTestId("subject")).toHaveTextContent("alice");
    expect(screen.getByText("Using an access token for alice.")).toBeTruthy();

    // Forgetting the token: the chosen name is back.
    await user.click(screen.getByRole("button", { name: "Forget token" }));
    expect(await screen.findByRole("textbox", { name: "Your name" })).toHaveValue("operator-1234");
  });

  it("a refusal on a live page (a mistaken call) does not take Live away", async () => {
    const server = new FakeServer();
    const connection = server.connection();
    render(App, { connection, router: new Router(), identity: new Identity("amy") });
    const state = screen.getByRole("status", { name: "Connection" });
    await waitFor(() => expect(state).toHaveTextContent("Live"), SLOW);
    server.failures.set("SendMessage", serverError("content is required", Code.InvalidArgument));
    await expect(
      connection.chat.sendMessage({ room: "general", user: "amy", content: "" }),
    ).rejects.toThrow(/content is required/);
    expect(state).toHaveTextContent("Live");
  });

  it("every call refused from the start, for any reason: not Live, and the reason is shown", async () => {
    const server = new FakeServer();
    server.failures.set(
      "WatchRooms",
      serverError("the store is read-only", Code.FailedPrecondition),
    );
    const connection = server.connection();
    render(App, { connection, router: new Router(), identity: new Identity("amy") });
    const state = screen.getByRole("status", { name: "Connection" });
    await waitFor(() => expect(state).toHaveTextContent("Calls refused"), SLOW);
    expect(await screen.findByRole("alert", { name: "Room list error" })).toHaveTextContent(
      "failed_precondition: the store is read-only",
    );
    server.failures.delete("WatchRooms");
    await waitFor(() => expect(state).toHaveTextContent("Live"), SLOW);
    await waitFor(() => expect(screen.getByText(/No rooms yet/)).toBeTruthy(), SLOW);
  });
});
