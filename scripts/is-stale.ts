// The "is this build out of date" check shared by the apps' build scripts
// (apps/dashboard/scripts/build-if-stale.ts, apps/server/scripts/build-server.ts). It sits at the
// repository root because neither app depends on the other: each imports it by relative path,
// and it imports nothing of theirs.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** What {@link isStale} passes over while it walks the inputs. */
export interface StalenessOptions {
  /** Entry names (file or folder, at any depth) that do not count as inputs. */
  ignore?: (name: string) => boolean;
}

/**
 * The newest modification time (ms since the epoch) of `path` and, for a folder, of everything
 * below it; 0 when `path` does not exist.
 */
export function newestMtimeMs(path: string, options: StalenessOptions = {}): number {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const entry of readdirSync(path)) {
    if (options.ignore?.(entry)) continue;
    newest = Math.max(newest, newestMtimeMs(join(path, entry), options));
  }
  return newest;
}

/**
 * True when the build's `output` file is missing or older than any of its `inputs` (files or
 * folders, relative to `dir`; a missing input counts as old).
 */
export function isStale(
  dir: string,
  output: string,
  inputs: readonly string[],
  options: StalenessOptions = {},
): boolean {
  const built = join(dir, output);
  if (!existsSync(built)) return true;
  const builtAt = statSync(built).mtimeMs;
  return inputs.some((input) => newestMtimeMs(join(dir, input), options) > builtAt);
}
