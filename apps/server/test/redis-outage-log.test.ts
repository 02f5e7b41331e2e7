// A Redis outage as an operator reads it in the log: one line when it starts, one when it ends
// (with its duration), not a stack per reconnect attempt. A real redis-server is stopped for a
// few seconds under a subscriber and a writer, then started again.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type LogRecord, type ServerProcess, startServer } from "./harness.js";
import { RedisServer } from "./redis-server.js";
import { chatClient, StreamReader, uniqueRoom } from "./support.js";
import { skipWithout } from "./tools.js";

const noRedis = skipWithout("redis-server");

describe.skipIf(noRedis)("a Redis outage in the log", () => {
  let redis: RedisServer;
  let server: ServerProcess;

  beforeAll(async () => {
    redis = await RedisServer.start();
    server = await startServer({ env: { STORE: redis.url } });
  });
  afterAll(async () => {
    await server?.close();
    await redis?.close();
  });

  test("is one warn line when it starts and one info line with its duration when it ends", async () => {
    const room = uniqueRoom("outage-log");
    const client = chatClient(server.baseUrl);
    await client.sendMessage({ room, user: "w", content: "before" });
    const reader = new StreamReader((signal) =>
      client.subscribeMessages({ room, user: "r" }, { signal }),
    );
    await reader.count(1);
    const from = server.lines.length;
    await redis.stop();
    // Calls meanwhile fail (Unavailable); the client keeps reconnecting, about every 2 s.
    for (let i = 0; i < 8; i++) {
      await client.sendMessage({ room, user: "w", content: `during ${i}` }).catch(() => {});
      await new Promise((r) => setTimeout(r, 500));
    }
    await redis.start();
    await server.waitForRecord((r) => r.msg.startsWith("redis reachable again"), 20_000);
    await client.sendMessage({ room, user: "w", content: "after" });
    reader.cancel();
    const lines: LogRecord[] = server.lines
      .slice(from)
      .map((l) => JSON.parse(l) as LogRecord)
      .filter((r) => r.msg !== "rpc");
    const down = lines.filter((r) => r.msg.startsWith("redis unreachable"));
    const up = lines.filter((r) => r.msg.startsWith("redis reachable again"));
    expect(down, JSON.stringify(lines)).toHaveLength(1);
    expect(down[0]).toMatchObject({ level: 40, context: expect.stringMatching(/^redis /) });
    expect(down[0]?.msg).toMatch(
      /^redis unreachable \(.+\): calls that need it fail with unavailable until it answers again$/,
    );
    expect(up).toHaveLength(1);
    expect(up[0]).toMatchObject({ level: 30, failures: expect.any(Number) });
    // Stopped about 4 s; the client reconnects within 2 s of the start.
    expect(up[0]?.durationMs).toBeGreaterThanOrEqual(3_500);
    expect(up[0]?.durationMs).toBeLessThan(10_000);
    expect(up[0]?.msg).toMatch(/^redis reachable again after \d+\.\d s$/);
    expect(lines.indexOf(down[0] as LogRecord)).toBeLessThan(lines.indexOf(up[0] as LogRecord));
    // Not a stack per reconnect attempt or per background task: no "store trouble" at all.
    expect(lines.filter((r) => r.msg === "store trouble")).toEqual([]);
    expect(JSON.stringify(lines)).not.toContain("ECONNREFUSED");
  });
});
