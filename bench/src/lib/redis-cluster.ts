// A throw-away Redis Cluster for the cross-node scenario: 3 masters with one replica each, six
// Debian redis-server 7 processes on free loopback ports joined by `redis-cli --cluster create`.
// Modelled on the server's cluster test harness, without its failover tools: the bench only
// needs a cluster that stays up.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import calculateSlot from "cluster-key-slot";
import { track } from "./children.js";
import { freePort } from "./servers.js";
import { sleep } from "./stats.js";

const run = promisify(execFile);

/** Redis Cluster's hash slots (0 … 16383). */
export const CLUSTER_SLOTS = 16_384;

/** A master of the cluster, from `CLUSTER NODES`. */
export interface ClusterMaster {
  port: number;
  /** Slot ranges `[from, to]`, both included. */
  slots: Array<[number, number]>;
}

/** A Redis Cluster the bench started. */
export interface RunningRedisCluster {
  /** `redis-cluster://127.0.0.1:P1,…` with every node as a seed (Switchboard's `STORE`). */
  url: string;
  ports: readonly number[];
  /** The six redis-server processes (their CPU time: servers.ts `cpuSecondsOf`). */
  pids: readonly number[];
  /** The masters and their slots, as the cluster says now (CLUSTER NODES). */
  masters(): Promise<ClusterMaster[]>;
  /** The slot of `key` as the cluster computes it (CLUSTER KEYSLOT). */
  keySlot(key: string): Promise<number>;
  /** SIGKILL to every node, then the directory is deleted. */
  stop(): Promise<void>;
}

/** The hash slot of a key: CRC16 of its `{hash tag}` (or of the whole key), mod 16384. */
export function slotOf(key: string): number {
  return calculateSlot(key);
}

/** The master serving `slot`, or undefined when no master does. */
export function masterOfSlot(masters: ClusterMaster[], slot: number): ClusterMaster | undefined {
  return masters.find((m) => m.slots.some(([from, to]) => from <= slot && slot <= to));
}

/** Parses the masters out of `CLUSTER NODES` output (failed masters are left out). */
export function parseMasters(text: string): ClusterMaster[] {
  const masters: ClusterMaster[] = [];
  for (const line of text.trim().split("\n")) {
    const [, address, flags, , , , , , ...slots] = line.trim().split(" ");
    const flagSet = new Set((flags ?? "").split(","));
    if (!flagSet.has("master") || flagSet.has("fail") || flagSet.has("fail?")) continue;
    const served = slots.filter((s) => !s.startsWith("["));
    // A master with no slot serves nothing (also: a replica whose new role has not been gossiped).
    if (served.length === 0) continue;
    masters.push({
      port: Number((address ?? "").split("@")[0]?.split(":").at(-1)),
      // "[slot->-node]" entries are slots being migrated, not served.
      slots: served.map((s) => {
        const [from, to] = s.split("-").map(Number);
        return [from as number, to ?? (from as number)] as [number, number];
      }),
    });
  }
  return masters;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], {
    timeout: 5_000,
  });
  return stdout;
}

async function waitUntil(condition: () => Promise<boolean>, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * Starts 6 redis-server processes (`--cluster-enabled yes`, no persistence, diskless replica
 * sync, the default 15 s `cluster-node-timeout`: no failover is wanted here), each in its own
 * temporary directory, creates the cluster with `--cluster-replicas 1` (3 masters, 3 replicas)
 * and resolves once every node says `cluster_state:ok` and every replica has synced.
 * The processes inherit this process's cores.
 * @throws when redis-server or redis-cli is missing (Debian: redis-server, redis-tools) or the
 *   cluster does not form within 60 s; whatever was started is stopped first.
 */
export async function startRedisCluster(): Promise<RunningRedisCluster> {
  for (const [tool, pkg] of [
    ["redis-server", "redis-server"],
    ["redis-cli", "redis-tools"],
  ] as const) {
    await run(tool, ["--version"]).catch(() => {
      throw new Error(`${tool} is not installed (Debian: apt-get install ${pkg})`);
    });
  }
  const ports: number[] = [];
  while (ports.length < 6) {
    const port = await freePort();
    // The cluster bus listens on port + 10000: it must exist and not collide with another node.
    if (port > 55_000 || ports.some((p) => p === port || Math.abs(p - port) === 10_000)) continue;
    ports.push(port);
  }
  const dir = mkdtempSync(join(tmpdir(), "switchboard-bench-cluster-"));
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGKILL");
        await exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      const cwd = join(dir, String(port));
      mkdirSync(cwd);
      const child = track(
        spawn(
          "redis-server",
          [
            ...["--port", String(port), "--bind", "127.0.0.1", "--dir", cwd],
            ...["--save", "", "--appendonly", "no"],
            ...["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
            ...["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"],
          ],
          { stdio: "ignore" },
        ),
      );
      child.on("error", () => {});
      children.push(child);
    }
    for (const port of ports)
      await waitUntil(
        async () => (await cli(port, "ping")).trim() === "PONG",
        10_000,
        `redis-server on ${port}`,
      );
    await run(
      "redis-cli",
      [
        "--cluster",
        "create",
        ...ports.map((p) => `127.0.0.1:${p}`),
        "--cluster-replicas",
        "1",
        "--cluster-yes",
      ],
      { timeout: 30_000 },
    );
    await waitUntil(
      async () =>
        (await Promise.all(ports.map((p) => cli(p, "cluster", "info")))).every((info) =>
          info.includes("cluster_state:ok"),
        ),
      20_000,
      "cluster_state:ok on every node",
    );
    await waitUntil(
      async () =>
        (await Promise.all(ports.map((p) => cli(p, "info", "replication")))).filter(
          (info) => info.includes("role:slave") && info.includes("master_link_status:up"),
        ).length === 3,
      20_000,
      "3 synced replicas",
    );
    // Every node knows every replica's role (gossip lags behind CLUSTER REPLICATE): the slot map
    // a client reads from any node is the final one.
    await waitUntil(
      async () =>
        (await Promise.all(ports.map((p) => cli(p, "cluster", "nodes")))).every(
          (nodes) => (nodes.match(/ (?:myself,)?slave /g) ?? []).length === 3,
        ),
      20_000,
      "every node to see 3 replicas",
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`,
    ports,
    pids: children.map((c) => c.pid as number),
    async masters() {
      return parseMasters(await cli(ports[0] as number, "cluster", "nodes"));
    },
    async keySlot(key) {
      return Number((await cli(ports[0] as number, "cluster", "keyslot", key)).trim());
    },
    stop,
  };
}
