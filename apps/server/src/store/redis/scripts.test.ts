import { readdirSync, readFileSync } from "node:fs";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../../../test/redis-server.js";
import { skipWithout } from "../../../test/tools.js";
import { FIELD_SEP, nodeKey } from "./keys.js";
import { loadLimitScripts } from "./limits.js";
import { loadScripts } from "./scripts.js";

// Every Lua file of the Redis store, found by reading the lua/ folder (not a list written here):
// each is loaded by one of the two loaders, and each compiles on a real Redis.
const LUA_DIR = new URL("./lua/", import.meta.url);
/** lua/*.lua by file name; lib.lua is the helpers prepended to the store's scripts. */
const FILES = new Map(
  readdirSync(LUA_DIR)
    .filter((name) => name.endsWith(".lua"))
    .map((name) => [name, readFileSync(new URL(name, LUA_DIR), "utf8")]),
);
const LIB = FILES.get("lib.lua") as string;
/** What the server loads: the store's scripts (lib.lua in front) and the limit scripts. */
const LOADED: Array<[string, string]> = [
  ...[...loadScripts()].map(([name, source]): [string, string] => [`${name}.lua`, source]),
  ...Object.values(loadLimitScripts()).map((source): [string, string] => [
    [...FILES].find(([, text]) => text === source)?.[0] ?? "(a script that is no file)",
    source,
  ]),
];

describe("the Redis store's Lua scripts (every file of lua/)", () => {
  it("loads every file: a script of the store (with lib.lua in front) or of the limits", () => {
    const loaded = LOADED.map(([name]) => name).sort();
    const files = [...FILES.keys()].filter((name) => name !== "lib.lua").sort();
    expect(loaded).toEqual(files);
    for (const [name, source] of LOADED) {
      const file = FILES.get(name) as string;
      if (name.startsWith("limit-")) {
        expect(source, name).toBe(file);
      } else {
        // The store's scripts get the shared helpers (dead nodes, separator) first.
        expect(source, name).toBe(LIB + file);
        expect(source, name).toContain("local DEAD_LIST, SEP = ARGV[1], ARGV[2]");
      }
    }
  });

  it("name no key, prefix or separator: those come in as KEYS and ARGV", () => {
    expect(nodeKey("n").startsWith("sb:")).toBe(true);
    for (const [name, source] of FILES) {
      expect(source, name).not.toContain("sb:");
      expect(source, name).not.toContain(FIELD_SEP);
      expect(source, name).not.toMatch(/\\0?31|\\x1f|\\u\{?001f/i);
    }
  });
});

describe.skipIf(skipWithout("redis-server"))("every loaded script on a real Redis", () => {
  let redis: RedisServer;
  let client: ReturnType<typeof createClient>;
  beforeAll(async () => {
    redis = await RedisServer.start();
    client = await createClient({ url: redis.url }).connect();
  });
  afterAll(async () => {
    await client?.close();
    await redis?.close();
  });

  it.each(LOADED.map(([name, source]) => ({ name, source })))(
    "$name compiles (SCRIPT LOAD)",
    async ({ source }) => {
      expect(await client.scriptLoad(source)).toMatch(/^[0-9a-f]{40}$/);
    },
  );
});
