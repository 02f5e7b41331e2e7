import { describe, expect, it } from "vitest";
import { FIELD_SEP, nodeKey } from "./keys.js";
import { loadScripts } from "./scripts.js";

describe("the Redis store's Lua scripts", () => {
  it("are read from their files, each with the shared helpers in front", () => {
    const scripts = loadScripts();
    expect([...scripts.keys()].sort()).toEqual([
      "append",
      "presence-due",
      "presence-join",
      "presence-leave",
      "read",
    ]);
    for (const source of scripts.values()) {
      expect(source).toMatch(/^-- Helpers prepended to every script/);
      expect(source).toContain("local DEAD_LIST, SEP = ARGV[1], ARGV[2]");
    }
  });

  it("name no key, prefix or separator: those come in as KEYS and ARGV", () => {
    expect(nodeKey("n").startsWith("sb:")).toBe(true);
    for (const [name, source] of loadScripts()) {
      expect(source, name).not.toContain("sb:");
      expect(source, name).not.toContain(FIELD_SEP);
      expect(source, name).not.toMatch(/\\0?31|\\x1f|\\u\{?001f/i);
    }
  });
});
