import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { LimitCounter, StreamSlot } from "../../ops/limits.js";
import type { RedisConnection } from "./connection.js";

/** The identity's token bucket (lua/limit-take.lua): one hash tag per identity, one slot. */
export const bucketKey = (identity: string) => `sb:{lim:${identity}}:bucket`;
/** The identity's open streams (lua/limit-stream-acquire.lua), in the bucket's slot. */
export const streamsKey = (identity: string) => `sb:{lim:${identity}}:streams`;

/** A stream slot's lease, ms: a process that dies (kill -9) frees its slots within this. */
export const STREAM_LEASE_MS = 15_000;

/** What the counter needs of the Redis connection: its scripts, run by SHA. */
export type ScriptConnection = Pick<RedisConnection, "evalScript">;

/** Settings of {@link createRedisLimitCounter}. */
export interface RedisLimitOptions {
  /** This process's name in the members it adds (default: `<hostname>:<pid>:<random>`). */
  owner?: string;
  /** A stream slot's lease, ms (default {@link STREAM_LEASE_MS}); renewed every third of it. */
  leaseMs?: number;
  /** A renewal or a release that failed (Redis unreachable: the lease runs out by itself). */
  onError: (err: unknown, context: string) => void;
}

/**
 * The limit scripts (lua/limit-*.lua), read at start-up so that a missing file stops the server
 * at once. Unlike the store's scripts (scripts.ts) they take no shared helpers.
 *
 * @throws Error (ENOENT, naming the file) when a script cannot be read.
 */
export function loadLimitScripts(): Record<"take" | "acquire" | "renew" | "release", string> {
  const read = (name: string) =>
    readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8");
  return {
    take: read("limit-take"),
    acquire: read("limit-stream-acquire"),
    renew: read("limit-stream-renew"),
    release: read("limit-stream-release"),
  };
}

/**
 * The per-identity limits counted in Redis, shared by every node and worker on it: each
 * operation is one Lua script (lua/limit-*.lua), atomic, on the keys of one identity only. Those
 * keys carry the hash tag `{lim:<identity>}` (`sb:{lim:<identity>}:bucket`, `…:streams`), so
 * every script touches one slot and runs unchanged on a Redis Cluster.
 *
 * - Publish rate: a token bucket per identity (a hash of `tokens` and `at`), refilled on Redis's
 *   clock (`TIME` inside the script, never a client's), so nodes whose clocks disagree share one
 *   bucket exactly. The key expires once the bucket would be full again.
 * - Open streams: a lease per stream (leases: Gray and Cheriton, 1989). The identity's sorted
 *   set holds one member per open stream, `<owner>:<n>` (owner: this process), scored by the
 *   lease's expiry (Redis TIME, ms). Acquiring first removes the members whose lease ran out,
 *   then adds one unless `max` remain (lua/limit-stream-acquire.lua); releasing removes the
 *   member (lua/limit-stream-release.lua); every process renews the leases it holds every third
 *   of a lease (lua/limit-stream-renew.lua, one call per identity). A process killed with
 *   `kill -9` renews nothing, so its slots come back within one lease (15 s) without any other
 *   node having to notice its death. A Redis outage longer than a lease lets leases run out; the
 *   next renewal puts the streams still open back, so an identity may be over its cap until
 *   enough of them end. Chosen over a per-node hash plus node liveness: counting that hash means
 *   reading every node's heartbeat key, keys in other slots, which a script on a Redis Cluster
 *   may not touch, and a dead node's entries would need a sweeper.
 *
 * Costs: one round trip per publish (when PUBLISH_RATE is on) and per stream opened (when
 * MAX_STREAMS_PER_IDENTITY is on); one per stream's end; renewals are one script call per
 * identity with open streams on this process, every 5 s.
 *
 * Errors: while Redis is unreachable the operations throw StoreUnavailableError (the caller sees
 * Unavailable); a failed release or renewal goes to `onError`, and its lease runs out by itself.
 *
 * @throws Error (ENOENT) at creation when a script file is missing.
 */
export function createRedisLimitCounter(
  connection: ScriptConnection,
  options: RedisLimitOptions,
): LimitCounter {
  const scripts = loadLimitScripts();
  const owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
  const leaseMs = options.leaseMs ?? STREAM_LEASE_MS;
  // The members this process holds, by identity: what it renews.
  const held = new Map<string, Set<string>>();
  let next = 0;

  // One report per round, however many identities failed (Redis unreachable fails them all).
  const renew = async () => {
    const results = await Promise.allSettled(
      [...held].map(([identity, members]) =>
        connection.evalScript(scripts.renew, [streamsKey(identity)], [String(leaseMs), ...members]),
      ),
    );
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0) {
      options.onError(
        failed[0]?.reason,
        `stream slot renewal (${failed.length} of ${results.length} identities)`,
      );
    }
  };
  const timer = setInterval(() => void renew(), Math.max(1, Math.floor(leaseMs / 3)));
  timer.unref();

  const forget = (identity: string, member: string) => {
    const members = held.get(identity);
    if (members === undefined || !members.delete(member)) return false;
    if (members.size === 0) held.delete(identity);
    return true;
  };
  const remove = (identity: string, member: string) =>
    connection
      .evalScript(scripts.release, [streamsKey(identity)], [member])
      .catch((err: unknown) => options.onError(err, "stream slot release"));

  return {
    async takePublishToken(identity, ratePerS, burst, signal) {
      const wait = await connection.evalScript(
        scripts.take,
        [bucketKey(identity)],
        [String(ratePerS), String(burst)],
        signal,
      );
      return Number(wait);
    },

    async acquireStream(identity, max, signal): Promise<StreamSlot | undefined> {
      const member = `${owner}:${++next}`;
      let acquired: unknown;
      try {
        acquired = await connection.evalScript(
          scripts.acquire,
          [streamsKey(identity)],
          [String(max), member, String(leaseMs)],
          signal,
        );
      } catch (err) {
        // Whether Redis added it is not known: removing it is harmless either way.
        void remove(identity, member);
        throw err;
      }
      if (Number(acquired) !== 1) return undefined;
      // Renewed from now on. Only once acquired: a renewal sent while the script ran would add
      // a refused member back.
      let members = held.get(identity);
      if (members === undefined) {
        members = new Set();
        held.set(identity, members);
      }
      members.add(member);
      return {
        release: () => {
          if (forget(identity, member)) void remove(identity, member);
        },
      };
    },

    async close() {
      clearInterval(timer);
      const releases: Array<Promise<unknown>> = [];
      for (const [identity, members] of held) {
        for (const member of members) releases.push(remove(identity, member));
      }
      held.clear();
      await Promise.all(releases);
    },
  };
}
