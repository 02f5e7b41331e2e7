// The CLI's errors read as causes when the connection itself fails: a wrong scheme, a wrong
// port, a server that is not running, and a token that cannot be a token. Each case is what a
// user really runs into, against real peers (a Switchboard server, Debian's Redis).
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../server/test/harness.js";
import { RedisServer } from "../../server/test/redis-server.js";
import { skipWithout } from "../../server/test/tools.js";
import { runCli, ServerProcess } from "./harness.js";

describe("switchboard connection errors", () => {
  const noRedis = skipWithout("redis-server");
  let server: ServerProcess;
  let redis: RedisServer | undefined;
  let banner: Server;
  let bannerUrl: string;
  beforeAll(async () => {
    [server, redis] = await Promise.all([
      ServerProcess.start("memory"),
      noRedis ? undefined : RedisServer.start(),
    ]);
    // A service that greets first and hangs up, as SSH or SMTP do.
    banner = createServer((socket) => socket.end("SSH-2.0-OpenSSH_9.2\r\n"));
    await new Promise<void>((resolve) => banner.listen(0, "127.0.0.1", resolve));
    bannerUrl = `http://127.0.0.1:${(banner.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    banner?.close();
    await Promise.all([server?.close(), redis?.close()]);
  });

  it("a server that is not running: connection refused, naming the URL", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const result = await runCli({ url }, ["rooms"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `error: unavailable: server unavailable (connection refused at ${url})\n`,
    );
  });

  it("https:// against the plain port says so and names the http:// URL", async () => {
    const https = server.url.replace("http:", "https:");
    const result = await runCli(server, ["--url", https, "send", "r", "hi", "-u", "a"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `error: unavailable: TLS handshake failed: ${https} closed the connection; is it serving plain http://? Try ${server.url}\n`,
    );
  });

  it.skipIf(noRedis).each(["connect", "grpc", "grpcweb"])(
    "a port that runs Redis is not a Switchboard server (%s)",
    async (protocol) => {
      const url = `http://127.0.0.1:${redis?.port}`;
      const result = await runCli({ url }, ["--protocol", protocol, "rooms"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(
          `^error: unavailable: (${url} (closed the connection without answering|does not answer in HTTP .*); is this the port of a Switchboard server\\?|connection lost .*)\\n$`,
        ),
      );
      expect(result.stderr).not.toMatch(/EPIPE|internal/);
    },
  );

  it.each(["connect", "grpc"])(
    "a port that runs something else again (%s) says it does not answer in HTTP",
    async (protocol) => {
      const result = await runCli({ url: bannerUrl }, ["--protocol", protocol, "rooms"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(
          `^error: unavailable: ${bannerUrl} does not answer in HTTP \\(.*\\); is this the port of a Switchboard server\\?\\n$`,
        ),
      );
    },
  );

  it("--token garbage is refused before any call, as a usage error", async () => {
    const [flag, env] = await Promise.all([
      runCli(server, ["--token", "garbage", "rooms"]),
      runCli(server, ["rooms"], { env: { SWITCHBOARD_TOKEN: "not.a.jwt" } }),
    ]);
    for (const result of [flag, env]) {
      expect(result.code).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(
        /^error: --token \(or SWITCHBOARD_TOKEN\) is not a JWT: .*; mint one with `switchboard token`\n$/,
      );
    }
  });
});
