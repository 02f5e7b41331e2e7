import { readFileSync } from "node:fs";
import type { RedisConnection } from "./connection.js";
import { FIELD_SEP } from "./keys.js";

/** The Lua scripts of the Redis store, one file each in ./lua (see each file for its keys). */
export type ScriptName = "append" | "read" | "presence-join" | "presence-leave" | "presence-due";
const NAMES: readonly ScriptName[] = [
  "append",
  "read",
  "presence-join",
  "presence-leave",
  "presence-due",
];

/**
 * Where the scripts are read from: ./lua next to this module. The compiled server (dist/, built
 * by scripts/build-server.ts) has them copied to dist/lua, next to its chunks.
 */
const LUA_DIR = new URL("./lua/", import.meta.url);

/**
 * Runs one of the scripts with its keys (all in one slot) and its own arguments (ARGV from 3
 * on); `dead` are the nodes the caller found dead (presence.ts, `deadNodes`).
 */
export type RunScript = (
  name: ScriptName,
  keys: string[],
  args: string[],
  dead?: readonly string[],
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
 * Runs the scripts on `connection`. Every script gets the dead nodes, each followed by the
 * presence field separator, and the separator itself as ARGV[1] and ARGV[2] (lua/lib.lua), so
 * that no separator is written twice, in TypeScript and in Lua.
 */
export function scriptRunner(
  connection: RedisConnection,
  scripts: ReadonlyMap<ScriptName, string>,
): RunScript {
  return (name, keys, args, dead = [], signal) =>
    connection.evalScript(
      scripts.get(name) as string,
      keys,
      [dead.map((node) => node + FIELD_SEP).join(""), FIELD_SEP, ...args],
      signal,
    );
}
