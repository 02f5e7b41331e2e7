import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, createConfigCommand, DEFAULTS, loadConfig, SETTINGS } from "./config.js";
import { type AnySetting, defaultText, flagOf } from "./settings.js";

const settings = Object.entries(SETTINGS) as Array<[string, AnySetting]>;

describe("loadConfig", () => {
  it("has the documented defaults", () => {
    expect(loadConfig([], {})).toMatchObject({
      port: 8080,
      host: "127.0.0.1",
      store: { kind: "sqlite", dataDir: resolve("data") },
      logLevel: "info",
      instanceId: "127.0.0.1:8080",
      subscriberQueueLimit: 1024,
      maxContentBytes: 4096,
      chatHeartbeatS: 15,
      presenceGraceMs: 10_000,
      corsOrigins: [],
    });
  });

  it("takes every default from DEFAULTS, and has a value for every setting but STORE/DATA_DIR", () => {
    const config = loadConfig([], {}) as unknown as Record<string, unknown>;
    for (const [key, setting] of settings) {
      if (key === "store" || key === "dataDir") continue;
      if (key === "instanceId") continue; // computed: HOST:PORT
      expect(config[key], setting.env).toEqual(DEFAULTS[key as keyof typeof DEFAULTS]);
    }
    expect(Object.keys(config).sort()).toEqual(
      settings
        .map(([key]) => key)
        .filter((key) => key !== "dataDir")
        .sort(),
    );
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
      store: { kind: "sqlite", dataDir: "/home/me/project/var/switchboard" },
      tlsCert: "/home/me/project/tls/cert.pem",
      tlsKey: "/etc/key.pem",
      authJwksFile: "/home/me/keys.json",
    });
  });

  it("reads environment variables, and a flag wins over its variable", () => {
    const config = loadConfig(["--port", "9000", "--publish-rate", "5"], {
      PORT: "7000",
      PUBLISH_RATE: "1",
      STORE: "memory",
      LOG_LEVEL: "debug",
      CORS_ORIGINS: "https://a.example, https://b.example:8443",
    });
    expect(config).toMatchObject({
      port: 9000,
      publishRatePerS: 5,
      store: { kind: "memory" },
      logLevel: "debug",
      corsOrigins: ["https://a.example", "https://b.example:8443"],
    });
  });

  it("makes the store one value: Redis with its URL, and no DATA_DIR unless SQLite", () => {
    const redis = loadConfig(["--workers", "2"], {
      STORE: "redis://:pw@cache:6379/2",
      DATA_DIR: "elsewhere",
    });
    expect(redis.store).toEqual({ kind: "redis", url: "redis://:pw@cache:6379/2" });
    expect(redis.workers).toBe(2);
    expect(loadConfig([], { STORE: "memory", DATA_DIR: "x" }).store).toEqual({ kind: "memory" });
    const cluster = loadConfig(["--workers", "2"], {
      STORE: "redis-cluster://10.0.0.1:7000, cache-2:7001,[::1]:7002",
    });
    expect(cluster.store).toEqual({
      kind: "redis-cluster",
      nodes: ["10.0.0.1:7000", "cache-2:7001", "[::1]:7002"],
    });
    // The workers of one machine share the SQLite file.
    const sqlite = loadConfig(["--workers", "2"], { DATA_DIR: "/srv/sb" });
    expect([sqlite.store, sqlite.workers]).toEqual([{ kind: "sqlite", dataDir: "/srv/sb" }, 2]);
    expect(loadConfig([], { REDIS_WAIT_REPLICAS: "1" }).redisWaitReplicas).toBe(1);
    expect(loadConfig([], {}).redisWaitTimeoutMs).toBe(1_000);
  });

  it("names the instance: INSTANCE_ID or HOST:PORT, with #N in cluster worker N", () => {
    expect(loadConfig(["--port", "81"], {}, { id: 3 }).instanceId).toBe("127.0.0.1:81#3");
    expect(loadConfig([], { INSTANCE_ID: "eu-1" }, { id: 2 }).instanceId).toBe("eu-1#2");
    expect(loadConfig([], { INSTANCE_ID: "eu-1" }, undefined).instanceId).toBe("eu-1");
  });

  it("returns a frozen configuration", () => {
    const config = loadConfig([], { CORS_ORIGINS: "https://a.example" });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.store)).toBe(true);
    expect(Object.isFrozen(config.corsOrigins)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it("reads the env it is given and leaves the global process.env in place", () => {
    const global = process.env;
    const seen: boolean[] = [];
    const env = new Proxy<NodeJS.ProcessEnv>(
      { PORT: "9001" },
      {
        get(target, name) {
          seen.push(process.env === global);
          return Reflect.get(target, name);
        },
      },
    );
    const saved = process.env.HOST;
    process.env.HOST = "10.9.9.9";
    try {
      const config = loadConfig([], env);
      expect(config.port).toBe(9001);
      expect(config.host).toBe("127.0.0.1");
    } finally {
      if (saved === undefined) delete process.env.HOST;
      else process.env.HOST = saved;
    }
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((same) => same)).toBe(true);
  });

  it.each([
    [{ PORT: "http" }, /PORT must be an integer from 0 to 65535/],
    [{ PORT: "70000" }, /PORT must be an integer/],
    [
      { STORE: "postgres" },
      /STORE must be sqlite, memory, a redis:\/\/host:port\/db URL, or redis-cluster:/,
    ],
    [{ STORE: "http://cache:6379" }, /STORE must be sqlite, memory, a redis/],
    [
      { STORE: "redis-cluster://" },
      /STORE must list the cluster's seed nodes as redis-cluster:\/\/host:port/,
    ],
    [
      { STORE: "redis-cluster://a:7000,b" },
      /STORE must list the cluster's seed nodes .*\(got "b"\)/,
    ],
    [{ STORE: "redis-cluster://a:70000" }, /STORE must list the cluster's seed nodes/],
    [{ WORKERS: "2", STORE: "memory" }, /WORKERS=2 needs a store the workers can share/],
    [{ WORKERS: "many" }, /WORKERS must be an integer/],
    [{ LOG_LEVEL: "loud" }, /LOG_LEVEL must be one of/],
    [{ SUBSCRIBER_QUEUE_LIMIT: "0" }, /SUBSCRIBER_QUEUE_LIMIT must be an integer from 1/],
    [{ TLS_CERT: "cert.pem" }, /TLS_CERT and TLS_KEY must be set together/],
    [{ TLS_CERT: "", TLS_KEY: "" }, /TLS_CERT must not be empty/],
    [{ HOST: " " }, /HOST must not be empty/],
    [{ PRESENCE_GRACE_MS: "-1" }, /PRESENCE_GRACE_MS must be an integer from 0 to 3600000/],
    [{ CORS_ORIGINS: "app.example.com" }, /CORS_ORIGINS must be a comma-separated list/],
    // A limit that is a setting may tighten the contract's rule, never loosen it.
    [
      { MAX_CONTENT_BYTES: "1048577" },
      /MAX_CONTENT_BYTES must be at most 1048576, the contract's ceiling \(chat\.proto: chat\.SendMessageRequest\.content max_bytes\)/,
    ],
    [
      { MAX_USER_BYTES: "4097" },
      /MAX_USER_BYTES must be at most 4096, the contract's ceiling \(chat\.proto: chat\.SendMessageRequest\.user max_bytes\)/,
    ],
    [{ MAX_USER_BYTES: "0" }, /MAX_USER_BYTES must be an integer from 1 to 4096/],
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

  it("says whether a bad value came from a flag or a variable", () => {
    expect(() => loadConfig(["--port", "x"], {})).toThrow(
      "option '--port <n>' argument 'x' is invalid. PORT must be an integer from 0 to 65535",
    );
    expect(() => loadConfig([], { PORT: "x" })).toThrow(
      "option '--port <n>' value 'x' from env 'PORT' is invalid. PORT must be an integer from 0 to 65535",
    );
  });

  it("rejects an unknown flag", () => {
    expect(() => loadConfig(["--prot", "1"], {})).toThrow(/unknown option '--prot'/);
  });
});

describe("SETTINGS", () => {
  it("gives each setting its own variable and flag", () => {
    const envs = settings.map(([, s]) => s.env);
    expect(new Set(envs).size).toBe(envs.length);
    for (const env of envs) expect(env).toMatch(/^[A-Z][A-Z0-9_]*$/);
    const flags = settings.map(([, s]) => flagOf(s));
    expect(new Set(flags).size).toBe(flags.length);
  });

  it("documents each setting in one line", () => {
    for (const [, s] of settings) {
      expect(s.doc, s.env).not.toBe("");
      expect(s.doc, s.env).not.toMatch(/[\n|]/);
    }
  });

  it("has defaults its own parser accepts as they are shown", () => {
    for (const [, s] of settings) {
      const text = defaultText(s);
      if (text === undefined) continue;
      expect(s.parser.parse(text, s.env), s.env).toEqual(s.default);
    }
  });

  it("lists every setting in --help with its flag, variable and default", () => {
    const help = createConfigCommand().helpInformation().replace(/\s+/g, " ");
    for (const [, s] of settings) {
      expect(help).toContain(`${flagOf(s)} ${s.parser.arg}`);
      expect(help).toContain(`env: ${s.env})`);
    }
    expect(help).toContain("(default: 8080, env: PORT)");
    expect(help).toContain("(default: HOST:PORT, env: INSTANCE_ID)");
    expect(help).toContain("(env: TLS_CERT)");
  });
});
