import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.js";

describe("loadConfig", () => {
  it("has the documented defaults", () => {
    expect(loadConfig([], {})).toMatchObject({
      port: 8080,
      host: "127.0.0.1",
      dataDir: resolve("data"),
      store: "sqlite",
      logLevel: "info",
      instanceId: "127.0.0.1:8080",
      subscriberQueueLimit: 1024,
      maxContentBytes: 4096,
      chatHeartbeatS: 15,
      presenceGraceMs: 10_000,
    });
  });

  it("resolves relative paths against the directory the command ran from (INIT_CWD)", () => {
    const config = loadConfig([], {
      INIT_CWD: "/home/me/project",
      DATA_DIR: "var/switchboard",
      TLS_CERT: "tls/cert.pem",
      TLS_KEY: "/etc/key.pem",
      AUTH_JWKS_FILE: "../keys.json",
    });
    expect(config).toMatchObject({
      dataDir: "/home/me/project/var/switchboard",
      tlsCert: "/home/me/project/tls/cert.pem",
      tlsKey: "/etc/key.pem",
      authJwksFile: "/home/me/keys.json",
    });
  });

  it("reads environment variables, and a flag wins over its variable", () => {
    const config = loadConfig(["--port", "9000"], {
      PORT: "7000",
      STORE: "memory",
      LOG_LEVEL: "debug",
    });
    expect(config).toMatchObject({ port: 9000, store: "memory", logLevel: "debug" });
  });

  it.each([
    [{ PORT: "http" }, /PORT must be an integer from 0 to 65535/],
    [{ PORT: "70000" }, /PORT must be an integer/],
    [{ STORE: "postgres" }, /STORE must be sqlite, memory, or a redis:\/\/host:port\/db URL/],
    [{ STORE: "http://cache:6379" }, /STORE must be sqlite, memory, or a redis/],
    [{ WORKERS: "2" }, /WORKERS=2 needs STORE=redis/],
    [{ WORKERS: "many" }, /WORKERS must be an integer/],
    [{ LOG_LEVEL: "loud" }, /LOG_LEVEL must be one of/],
    [{ SUBSCRIBER_QUEUE_LIMIT: "0" }, /SUBSCRIBER_QUEUE_LIMIT must be an integer from 1/],
    [{ TLS_CERT: "cert.pem" }, /TLS_CERT and TLS_KEY must be set together/],
    [{ HOST: " " }, /HOST must not be empty/],
    [{ PRESENCE_GRACE_MS: "-1" }, /PRESENCE_GRACE_MS must be an integer from 0 to 3600000/],
  ])("rejects %o with a one-line message naming the variable", (env, message) => {
    const attempt = () => loadConfig([], env);
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(message);
    try {
      attempt();
    } catch (err) {
      expect((err as Error).message).not.toContain("\n");
    }
  });

  it("rejects an unknown flag", () => {
    expect(() => loadConfig(["--prot", "1"], {})).toThrow(/unknown option '--prot'/);
  });
});
