import { readFileSync } from "node:fs";
import type { RedisConnection } from "./connection.js";
import { FIELD_SEP, NODE_KEY_PREFIX } from "./keys.js";

/** The Lua scripts of the Redis store, one file each in ./lua (see each file for its keys). */
export type ScriptName = "append" | "presence-join" | "presence-leave" | "presence-due";
const NAMES: readonly ScriptName[] = ["append", "presence-join", "presence-leave", "presence-due"];

/**
 * Where the scripts are read from: ./lua next to this module. The compiled server (dist/, built
 * by scripts/build-server.ts) has them copied to dist/lua, next to its chunks.
 */
const LUA_DIR = new URL("./lua/", import.meta.url);

/** Runs one of the scripts with its keys and its own arguments (ARGV from 3 on). */
export type RunScript = (
  name: ScriptName,
  keys: string[],
  args: string[],
  signal?: AbortSignal,
) => Promise<unknown>;

/**
 * Reads every script, each with lua/lib.lua (the shared helpers) in front: at start-up, so a
 * missing file stops the server at once rather than failing its first append.
 *
 * @throws Error (ENOENT, naming the file) when a script cannot be read.
 */
export function loadScripts(): ReadonlyMap<ScriptName, string> {
  const read = (file: string) => readFileSync(new URL(file, LUA_DIR), "utf8");
  const lib = read("lib.lua");
  return new Map(NAMES.map((name) => [name, lib + read(`${name}.lua`)]));
}

/**
 * Runs the scripts on `connection`. Every script gets the key prefix of node heartbeats and the
 * presence field separator as ARGV[1] and ARGV[2] (lua/lib.lua), so that no key name is written
 * twice, in TypeScript and in Lua.
 */
export function scriptRunner(
  connection: RedisConnection,
  scripts: ReadonlyMap<ScriptName, string>,
): RunScript {
  return (name, keys, args, signal) =>
    connection.evalScript(
      scripts.get(name) as string,
      keys,
      [NODE_KEY_PREFIX, FIELD_SEP, ...args],
      signal,
    );
}
