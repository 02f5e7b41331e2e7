// WORKERS=2 on one port: whichever worker a scrape lands on, /metrics reports the calls that
// every worker served (the primary sums the workers' registries).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { RedisServer } from "./redis-server.js";
import { uniqueRoom } from "./support.js";
import { skipWithout } from "./tools.js";
import { once } from "./workers.js";

function started(metrics: string): number {
  const line = metrics
    .split("\n")
    .find(
      (l) =>
        l.startsWith("grpc_server_started_total{") &&
        l.includes('grpc_method="SendMessage"') &&
        l.includes('protocol="connect"'),
    );
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

describe.skipIf(skipWithout("redis-server"))("/metrics with WORKERS=2", () => {
  let redis: RedisServer;
  let server: ServerProcess;
  beforeAll(async () => {
    redis = await RedisServer.start();
    server = await startServer({ env: { STORE: redis.url, WORKERS: "2" } });
    await server.waitForRecord((r) => r.msg === "all workers listening", 20_000);
  });
  afterAll(async () => {
    await server?.close();
    await redis?.close();
  });

  it("sums every worker's counters, whichever worker answers the scrape", async () => {
    const room = uniqueRoom("cluster-metrics");
    const sends = 10;
    for (let i = 0; i < sends; i++) {
      await once(`${server.baseUrl}/chat.ChatService/SendMessage`, {
        room,
        user: "u",
        content: `m${i}`,
      });
    }
    // Both workers served some of them (round-robin), and each scrape sees all of them.
    const served = new Set(
      server
        .records()
        .filter((r) => r.msg === "rpc")
        .map((r) => String(r.instance)),
    );
    expect(served.size).toBe(2);
    for (let i = 0; i < 4; i++) {
      expect(started((await once(`${server.baseUrl}/metrics`)).body)).toBe(sends);
    }
  });
});
