import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { REPO_DIR, type ServerProcess, startServer } from "./harness.js";
import { uniqueRoom } from "./support.js";
import { toolPath } from "./tools.js";

// buf curl is a third client implementation (Go: connect-go and grpc-go's wire formats), and it
// reads the contract from proto/ itself, so this also checks that the served paths and JSON
// names match the .proto files.

const run = promisify(execFile);

let server: ServerProcess;

beforeAll(async () => {
  server = await startServer({ store: "memory" });
});

afterAll(async () => {
  await server?.close();
});

/** Runs `buf curl` and parses its JSON output. */
async function bufCurl(
  protocol: "connect" | "grpc" | "grpcweb",
  method: string,
  body: object,
): Promise<unknown> {
  const args = ["curl", "--schema", join(REPO_DIR, "proto"), "--protocol", protocol];
  // gRPC needs HTTP/2; over plain http:// that is h2c with prior knowledge.
  if (protocol === "grpc") args.push("--http2-prior-knowledge");
  args.push("-d", JSON.stringify(body), `${server.baseUrl}/chat.ChatService/${method}`);
  const { stdout } = await run(toolPath("buf"), args, {
    timeout: 30_000,
    env: { ...process.env, BUF_CACHE_DIR: join(server.dataDir, "buf-cache") },
  });
  return JSON.parse(stdout);
}

describe("buf curl", () => {
  // Concurrent: each buf invocation compiles the schema, ~0.5 s of waiting on a child process.
  test.concurrent.each(["connect", "grpc", "grpcweb"] as const)(
    "SendMessage over %s, then ListRooms",
    async (protocol) => {
      const room = uniqueRoom(`buf-${protocol}`);
      const first = (await bufCurl(protocol, "SendMessage", {
        room,
        user: "buf",
        content: `hello over ${protocol}`,
      })) as Record<string, unknown>;
      // uint64 is a JSON string (proto3 JSON mapping); the timestamp is RFC 3339.
      expect(first).toMatchObject({ offset: "1" });
      expect(first.messageId).toMatch(/^[0-9a-f-]{36}$/);
      expect(Date.parse(String(first.timestamp))).toBeGreaterThan(Date.now() - 60_000);

      const retryBody = { room, user: "buf", content: "again", clientMessageId: "buf-1" };
      const second = await bufCurl(protocol, "SendMessage", retryBody);
      const retry = await bufCurl(protocol, "SendMessage", retryBody);
      expect(second).toMatchObject({ offset: "2" });
      // The retry is the original's answer, saying it stored nothing new.
      expect(retry).toEqual({ ...(second as object), duplicate: true });

      const { rooms } = (await bufCurl(protocol, "ListRooms", {})) as {
        rooms: Array<Record<string, unknown>>;
      };
      // Zero-valued fields (subscriberCount 0) are left out of proto3 JSON.
      expect(rooms.find((r) => r.name === room)).toEqual({
        name: room,
        messageCount: "2",
        lastOffset: "2",
        epoch: first.epoch,
      });
    },
  );

  test("an invalid request fails with the server's code and message", async () => {
    const err = await bufCurl("connect", "SendMessage", {
      room: "no spaces!",
      user: "buf",
      content: "x",
    }).then(
      () => undefined,
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(err).toBeDefined();
    expect(err?.code).not.toBe(0);
    expect(err?.stderr).toMatch(/invalid_argument/);
    expect(err?.stderr).toMatch(/room/);
  });
});
