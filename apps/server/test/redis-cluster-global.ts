// The server-e2e project's globalSetup (vitest.e2e.config.ts): one Redis Cluster (6
// redis-server, redis-cluster.ts) for every test file of the run that asks for it
// (sharedRedisCluster), instead of one per file. Nothing starts unless a file asks: a run
// without cluster tests costs one idle loopback HTTP server. The cluster is started on the first
// request, checked healthy on each, and stopped at the end of the run.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { TestProject } from "vitest/node";
import { RedisCluster, redisClusterTools } from "./redis-cluster.js";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let cluster: Promise<RedisCluster> | undefined;
  const server = createServer((_req, res) => {
    void (async () => {
      try {
        const missing = await redisClusterTools();
        if (missing !== undefined) throw new Error(missing);
        cluster ??= RedisCluster.start();
        const started = await cluster;
        // A file before may have left it unhealthy (a bug): say so rather than hand it out.
        await started.waitHealthy(10_000);
        res.end(JSON.stringify({ ports: started.ports, dir: started.dir }));
      } catch (err) {
        res.statusCode = 500;
        res.end(err instanceof Error ? err.message : String(err));
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  project.provide("redisClusterBroker", `http://127.0.0.1:${port}/`);
  return async () => {
    server.close();
    const started = await cluster?.catch(() => undefined);
    await started?.close();
  };
}
