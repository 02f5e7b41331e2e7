import { describe, expect, it } from "vitest";
import type { StoreConfig } from "./config.js";
import { redactUrl, startupErrorMessage, storeLocation } from "./startup-error.js";
import { StoreUnavailableError } from "./store/message-store.js";

const sqlite: StoreConfig = { kind: "sqlite", dataDir: "/srv/switchboard/data" };
const config = {
  port: 80,
  host: "10.1.2.3",
  store: sqlite,
  tlsCert: "/etc/tls/cert.pem",
  tlsKey: "/etc/tls/key.pem",
  authJwksFile: undefined,
};

/** A system error as Node raises it. */
const sysError = (fields: Record<string, unknown>) => Object.assign(new Error("raw"), fields);

describe("startupErrorMessage", () => {
  it.each([
    [
      sysError({ code: "EACCES", syscall: "listen", port: 80 }),
      "no permission to listen on port 80 (PORT); ports below 1024 need privileges: choose another port",
    ],
    [
      sysError({ code: "EADDRINUSE", syscall: "listen" }),
      "port 80 is in use (PORT); stop the other process or choose another port",
    ],
    [
      sysError({ code: "EADDRNOTAVAIL", syscall: "listen" }),
      "cannot listen on 10.1.2.3 (HOST): not an address of this machine",
    ],
    [
      sysError({ code: "EACCES", syscall: "mkdir", path: "/srv/switchboard" }),
      "cannot use DATA_DIR /srv/switchboard/data: permission denied (/srv/switchboard)",
    ],
    [
      sysError({ code: "EROFS", syscall: "open", path: "/srv/switchboard/data/switchboard.db" }),
      "cannot use DATA_DIR /srv/switchboard/data: read-only file system (/srv/switchboard/data/switchboard.db)",
    ],
    [
      sysError({ code: "EACCES", syscall: "open", path: "/etc/tls/key.pem" }),
      "cannot read TLS_KEY /etc/tls/key.pem: permission denied",
    ],
    [
      Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" }),
      "cannot open the SQLite database /srv/switchboard/data/switchboard.db (DATA_DIR): database is locked (is another server using it?)",
    ],
  ])("%s → one line naming the setting", (err, line) => {
    expect(startupErrorMessage(err, config)).toBe(line);
  });

  it("names Redis without its password", () => {
    const line = startupErrorMessage(
      new StoreUnavailableError("redis unavailable: connect ECONNREFUSED 10.0.0.9:6379"),
      { ...config, store: { kind: "redis", url: "redis://app:s3cret@10.0.0.9:6379/2" } },
    );
    expect(line).toBe(
      "cannot reach Redis at redis://app@10.0.0.9:6379/2 (STORE): connect ECONNREFUSED 10.0.0.9:6379",
    );
  });

  it("names the Redis Cluster's seed nodes", () => {
    const line = startupErrorMessage(
      new StoreUnavailableError("redis unavailable: All the root nodes are unavailable"),
      { ...config, store: { kind: "redis-cluster", nodes: ["10.0.0.9:7000", "10.0.0.10:7000"] } },
    );
    expect(line).toBe(
      "cannot reach the Redis Cluster at 10.0.0.9:7000,10.0.0.10:7000 (STORE): All the root nodes are unavailable",
    );
  });

  it("leaves anything else to the stack trace (a bug)", () => {
    expect(startupErrorMessage(new TypeError("x is undefined"), config)).toBeUndefined();
    expect(startupErrorMessage(sysError({ code: "ENOENT", path: "/elsewhere" }), config)).toBe(
      undefined,
    );
  });
});

describe("storeLocation", () => {
  it("names the database file, the Redis URL without its password, or memory", () => {
    expect(storeLocation(sqlite)).toBe("/srv/switchboard/data/switchboard.db");
    expect(storeLocation({ kind: "redis", url: "redis://:pw@h:6379/0" })).toBe("redis://h:6379/0");
    expect(storeLocation({ kind: "memory" })).toBe("memory (lost at exit)");
    expect(storeLocation({ kind: "redis-cluster", nodes: ["a:7000", "b:7001"] })).toBe(
      "Redis Cluster a:7000,b:7001",
    );
    expect(redactUrl("not a url")).toBe("(invalid URL)");
  });
});
