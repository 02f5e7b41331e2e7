// The core RPC suite (rpc-matrix.test.ts), run again against a server on a real Redis.
import { afterAll } from "vitest";
import { RedisServer } from "./redis-server.js";
import { skipWithout } from "./tools.js";

if (!skipWithout("redis-server")) {
  const redis = await RedisServer.start();
  process.env.SWITCHBOARD_MATRIX_STORE = redis.url;
  afterAll(async () => {
    await redis.close();
  });
  await import("./rpc-matrix.test.js");
}
