// The access log names the client that says who it is (`x-switchboard-client`, which the
// dashboard sends), so a log reader can tell the dashboard's own calls apart.
import { afterAll, beforeAll, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";

let server: ServerProcess;
beforeAll(async () => {
  server = await startServer({ store: "memory" });
});
afterAll(async () => {
  await server?.close();
});

async function listRooms(client: string | undefined): Promise<void> {
  const res = await fetch(`${server.baseUrl}/chat.ChatService/ListRooms`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(client === undefined ? {} : { "x-switchboard-client": client }),
    },
    body: "{}",
  });
  expect(res.status).toBe(200);
}

it("logs `client` from x-switchboard-client, and only a short plain name", async () => {
  await listRooms("dashboard");
  await listRooms(undefined);
  await listRooms("x".repeat(40));
  const rpcLines = () =>
    server.records().filter((r) => r.msg === "rpc" && r.method === "/chat.ChatService/ListRooms");
  const deadline = Date.now() + 5000;
  while (rpcLines().length < 3 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const clients = rpcLines().map((r) => r.client);
  expect(clients).toEqual(["dashboard", undefined, undefined]);
});
