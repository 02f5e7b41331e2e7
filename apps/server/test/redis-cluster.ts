import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import calculateSlot from "cluster-key-slot";
import { inject } from "vitest";
import { freePort } from "./free-port.js";

declare module "vitest" {
  interface ProvidedContext {
    /**
     * Where the run's shared Redis Cluster is handed out (redis-cluster-global.ts, the
     * server-e2e project's globalSetup): `GET` it for `{ports, dir}`.
     */
    redisClusterBroker?: string;
  }
}

const run = promisify(execFile);

/** Whether `redis-server` and `redis-cli` are installed (Debian: redis-server, redis-tools). */
export async function redisClusterTools(): Promise<string | undefined> {
  for (const tool of ["redis-server", "redis-cli"]) {
    try {
      await run(tool, ["--version"]);
    } catch {
      return `${tool} is not installed (apt-get install redis-server)`;
    }
  }
  return undefined;
}

/** One line of `CLUSTER NODES`, parsed. */
export interface ClusterNode {
  id: string;
  port: number;
  role: "master" | "replica";
  failed: boolean;
  /** The master's id, for a replica. */
  masterId: string | undefined;
  /** Slot ranges `[from, to]`, for a master. */
  slots: Array<[number, number]>;
}

/**
 * A real Redis Cluster for the tests: 6 Debian `redis-server` 7 processes on free loopback ports,
 * `--cluster-enabled yes`, each in a temporary directory, joined by
 * `redis-cli --cluster create … --cluster-replicas 1`: 3 masters with one replica each. A short
 * `cluster-node-timeout` (1 s) makes a killed master's replica take over within a few seconds.
 * No persistence: what a master had not replicated when it was killed is lost, as on a
 * production cluster whose master's machine dies.
 *
 * Test files that leave the cluster as they found it share one per run
 * ({@link sharedRedisCluster}); a file that kills, freezes or fails over a node starts its own
 * ({@link RedisCluster.start}).
 */
export class RedisCluster {
  private readonly children = new Map<number, ChildProcess>();
  /** Ports of nodes killed here and not restarted. */
  private readonly down = new Set<number>();

  private constructor(
    readonly ports: readonly number[],
    readonly dir: string,
    /** Whether this process started the nodes (and `close()` stops them); else shared. */
    private readonly owned = true,
  ) {}

  /** A cluster another process started and stops (the shared one); see {@link sharedRedisCluster}. */
  static attach(ports: readonly number[], dir: string): RedisCluster {
    return new RedisCluster(ports, dir, false);
  }

  /** `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,…` (every node as a seed). */
  get url(): string {
    return `redis-cluster://${this.ports.map((p) => `127.0.0.1:${p}`).join(",")}`;
  }

  /**
   * Starts the 6 servers, creates the cluster, resolves once every node says `cluster_state:ok`
   * and every replica has synced. With `syncDelayS` (> 0), a master waits that long before the
   * first full sync of its replica (`repl-diskless-sync-delay`; Redis's default is 5 s, which is
   * why a cluster just made by `redis-cli --cluster create` has no replica in sync for its first
   * seconds, `wait_bgsave`), and this resolves without waiting for the replicas: the cluster
   * stays in that state until {@link RedisCluster.syncReplicasNow}.
   */
  static async start({ syncDelayS = 0 } = {}): Promise<RedisCluster> {
    const ports: number[] = [];
    while (ports.length < 6) {
      const port = await freePort();
      // The cluster bus listens on port + 10000: both must be free and distinct.
      if (port > 55_000 || ports.some((p) => Math.abs(p - port) === 10_000 || p === port)) continue;
      ports.push(port);
    }
    const cluster = new RedisCluster(ports, mkdtempSync(join(tmpdir(), "switchboard-cluster-")));
    try {
      await Promise.all(ports.map((port) => cluster.spawn(port, syncDelayS)));
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
      if (syncDelayS === 0) await cluster.waitHealthy();
      else {
        await cluster.waitUntil(
          async () => (await Promise.all(ports.map((p) => cluster.stateOk(p)))).every(Boolean),
          20_000,
          "cluster_state:ok on every node",
        );
      }
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /**
   * Resolves once every node says `cluster_state:ok` and all 3 replicas have synced (a WAIT
   * counts only synced replicas).
   */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    await this.waitUntil(
      async () => (await Promise.all(this.ports.map((p) => this.stateOk(p)))).every(Boolean),
      timeoutMs,
      "cluster_state:ok on every node",
    );
    await this.waitUntil(
      async () => (await this.syncedReplicas()) === 3,
      timeoutMs,
      "3 synced replicas",
    );
  }

  /** Runs `redis-cli -p port args…` and returns its output. */
  async cli(port: number, ...args: string[]): Promise<string> {
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], {
      timeout: 5_000,
    });
    return stdout;
  }

  /** The cluster as a live node sees it (CLUSTER NODES). */
  async nodes(): Promise<ClusterNode[]> {
    for (const port of this.livePorts()) {
      try {
        return parseNodes(await this.cli(port, "cluster", "nodes"));
      } catch {
        // That node is down: ask the next.
      }
    }
    throw new Error("no cluster node answers");
  }

  /** The port of the master that serves `key`'s slot now. */
  async masterOf(key: string): Promise<number> {
    const slot = calculateSlot(key);
    const master = (await this.nodes()).find(
      (n) => n.role === "master" && !n.failed && n.slots.some(([a, b]) => a <= slot && slot <= b),
    );
    if (master === undefined) throw new Error(`no master serves slot ${slot}`);
    return master.port;
  }

  /** The port of a replica of the master on `masterPort`. */
  async replicaOf(masterPort: number): Promise<number> {
    const nodes = await this.nodes();
    const master = nodes.find((n) => n.port === masterPort);
    const replica = nodes.find((n) => n.masterId === master?.id && !n.failed);
    if (replica === undefined) throw new Error(`no replica of ${masterPort}`);
    return replica.port;
  }

  /**
   * Makes the node on `port` stop processing anything for `ms` (DEBUG SLEEP): a replica stops
   * acknowledging its master's writes meanwhile, as a slow or partitioned replica does.
   * Resolves at once; the returned promise ends with the sleep.
   */
  freeze(port: number, ms: number): { done: Promise<void> } {
    this.mustOwn();
    const done = this.cli(port, "debug", "sleep", String(ms / 1000)).then(
      () => {},
      () => {},
    );
    return { done };
  }

  /** Closes the replication links of the master on `port` (CLIENT KILL TYPE replica). */
  async cutReplicas(port: number): Promise<void> {
    this.mustOwn();
    await this.cli(port, "client", "kill", "type", "replica");
  }

  /** Kills a node with SIGKILL (as a crash or a pulled cable looks to its peers). */
  async kill(port: number): Promise<void> {
    this.mustOwn();
    const child = this.children.get(port);
    this.children.delete(port);
    this.down.add(port);
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  /**
   * Starts a killed node again on its port and directory: its cluster config (nodes.conf) makes
   * it rejoin, as a replica of the master promoted in its place. Resolves once it has synced.
   */
  async restart(port: number): Promise<void> {
    this.mustOwn();
    await this.spawn(port);
    this.down.delete(port);
    await this.waitUntil(
      async () => {
        const info = await this.cli(port, "info", "replication").catch(() => "");
        return info.includes("role:slave") && info.includes("master_link_status:up");
      },
      20_000,
      `${port} to rejoin as a synced replica`,
    );
  }

  /**
   * Waits until the slot of `key` is served by a master other than `oldMaster` (its replica was
   * promoted) and the cluster is ok again, as every live node sees it.
   * @returns the new master's port.
   */
  async waitForPromotion(key: string, oldMaster: number, timeoutMs = 20_000): Promise<number> {
    let promoted = oldMaster;
    await this.waitUntil(
      async () => {
        promoted = await this.masterOf(key).catch(() => oldMaster);
        if (promoted === oldMaster) return false;
        const ok = await Promise.all(this.livePorts().map((p) => this.stateOk(p)));
        return ok.every(Boolean);
      },
      timeoutMs,
      `a replica of ${oldMaster} to be promoted`,
    );
    return promoted;
  }

  /** Stops every node and deletes the directory; nothing for a shared cluster. */
  async close(): Promise<void> {
    if (!this.owned) return;
    await Promise.all([...this.children.keys()].map((port) => this.kill(port)));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private livePorts(): number[] {
    return this.ports.filter((p) => !this.down.has(p));
  }

  /** Nodes of a shared cluster are not this file's to kill, freeze or cut off. */
  private mustOwn(): void {
    if (!this.owned) {
      throw new Error(
        "the shared Redis Cluster serves other test files: start one of your own (RedisCluster.start()) to kill, freeze or cut off its nodes",
      );
    }
  }

  private async spawn(port: number, syncDelayS = 0): Promise<void> {
    const dir = join(this.dir, String(port));
    mkdirSync(dir, { recursive: true });
    const child = spawn(
      "redis-server",
      [
        ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir],
        ...["--save", "", "--appendonly", "no"],
        ...["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
        // A master unreachable for 1 s is failed over; any replica may be promoted.
        ...["--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"],
        ...["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", String(syncDelayS)],
        // DEBUG SLEEP, to make a replica lag behind its master (from loopback only).
        ...["--enable-debug-command", "local"],
      ],
      { stdio: "ignore" },
    );
    this.children.set(port, child);
    const failed = new Promise<never>((_, reject) => {
      child.once("error", (err) => reject(new Error(`cannot start redis-server: ${err.message}`)));
      child.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)));
    });
    failed.catch(() => {});
    await Promise.race([
      failed,
      this.waitUntil(
        () =>
          this.cli(port, "ping").then(
            (out) => out.trim() === "PONG",
            () => false,
          ),
        10_000,
        `redis-server on ${port}`,
      ),
    ]);
  }

  private async stateOk(port: number): Promise<boolean> {
    try {
      return (await this.cli(port, "cluster", "info")).includes("cluster_state:ok");
    } catch {
      return false;
    }
  }

  /** Lets the masters sync their replicas at once (see `syncDelayS`); resolves once healthy. */
  async syncReplicasNow(): Promise<void> {
    this.mustOwn();
    await Promise.all(
      this.livePorts().map((p) => this.cli(p, "config", "set", "repl-diskless-sync-delay", "0")),
    );
    await this.waitHealthy();
  }

  /** How many replicas have synced with their master (`master_link_status:up`). */
  async syncedReplicas(): Promise<number> {
    let synced = 0;
    for (const port of this.livePorts()) {
      const info = await this.cli(port, "info", "replication").catch(() => "");
      if (info.includes("role:slave") && info.includes("master_link_status:up")) synced++;
    }
    return synced;
  }

  private async waitUntil(
    condition: () => Promise<boolean>,
    ms: number,
    what: string,
  ): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * The run's shared Redis Cluster, for a test file that leaves it as it found it (it kills,
 * freezes or fails over nothing, and keeps to rooms of its own: `uniqueRoom`): handed out by the
 * server-e2e project's globalSetup (redis-cluster-global.ts), started on the first request and
 * checked healthy on each. Without that globalSetup (another vitest config), a cluster of the
 * file's own, stopped by its `close()`. (`close()` on the shared one does nothing.)
 */
export async function sharedRedisCluster(): Promise<RedisCluster> {
  const broker = inject("redisClusterBroker");
  if (broker === undefined) return RedisCluster.start();
  const res = await fetch(broker);
  const body = await res.text();
  if (!res.ok) throw new Error(`the shared Redis Cluster did not start: ${body}`);
  const { ports, dir } = JSON.parse(body) as { ports: number[]; dir: string };
  return RedisCluster.attach(ports, dir);
}

/** Parses `CLUSTER NODES` output. */
function parseNodes(text: string): ClusterNode[] {
  return text
    .trim()
    .split("\n")
    .map((line) => {
      const [id, address, flags, master, , , , , ...slots] = line.trim().split(" ");
      const flagSet = new Set((flags ?? "").split(","));
      return {
        id: id as string,
        port: Number((address ?? "").split("@")[0]?.split(":").at(-1)),
        role: flagSet.has("master") ? ("master" as const) : ("replica" as const),
        failed: flagSet.has("fail") || flagSet.has("fail?"),
        masterId: master === "-" ? undefined : master,
        slots: slots
          .filter((s) => !s.startsWith("["))
          .map((s) => {
            const [from, to] = s.split("-").map(Number);
            return [from as number, to ?? (from as number)] as [number, number];
          }),
      };
    });
}
