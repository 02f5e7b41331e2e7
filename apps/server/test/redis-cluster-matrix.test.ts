// The core RPC suite (rpc-matrix.test.ts), run again against a server on a real Redis Cluster:
// 3 masters and 3 replicas, the run's shared one (redis-cluster.ts). Skipped, with the reason,
// without redis-server.
import { afterAll, describe, it } from "vitest";
import { redisClusterTools, sharedRedisCluster } from "./redis-cluster.js";

const missing = await redisClusterTools();
if (missing === undefined) {
  const cluster = await sharedRedisCluster();
  process.env.SWITCHBOARD_MATRIX_STORE = cluster.url;
  afterAll(async () => {
    await cluster.close();
  });
  await import("./rpc-matrix.test.js");
} else {
  describe.skip(`the RPC matrix on Redis Cluster (${missing})`, () => {
    it("runs every RPC over every protocol", () => {});
  });
}
