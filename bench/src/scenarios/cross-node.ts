// Scenario 7, cross-node fan-out (issue 14): 3 Switchboard nodes, each its own process, on one
// redis-server against the same 3 nodes on a Redis Cluster of 3 masters and 3 replicas. 3 rooms
// whose keys (`sb:{room}:…`) hash to slots of 3 different masters; each room's publisher sends
// through one node and its subscribers are on the two others, so every delivery crosses nodes
// through Redis (sharded pub/sub on both stores). Open-loop stepped rate
// as in the fan-out scenario (lib/fanout-load.ts: SubscriberSet, Publisher), with a step loop of
// its own over several subscriber sets and publishers. Nothing is pinned: the runner gives its
// own threads both cores, and Redis, the nodes and the load generator share them.
import { createHistogram } from "node:perf_hooks";
import { Publisher, publishOpenLoop, SUSTAINED_P99_MS, SubscriberSet } from "../lib/fanout-load.js";
import { loadNow, ownCores, setOwnCores } from "../lib/machine.js";
import {
  CLUSTER_SLOTS,
  type ClusterMaster,
  masterOfSlot,
  type RunningRedisCluster,
  slotOf,
  startRedisCluster,
} from "../lib/redis-cluster.js";
import { type RunningRedis, startRedis } from "../lib/redis-server.js";
import type { CrossNodeRoom, CrossNodeRun, CrossNodeStep } from "../lib/results.js";
import {
  cpuSecondsOf,
  type RunningServer,
  type ServerSample,
  type StartOptions,
  startServer,
} from "../lib/servers.js";
import { sleep } from "../lib/stats.js";

/** The store the 3 nodes share: one redis-server, or a Redis Cluster (3 masters + 3 replicas). */
export type CrossNodeSetup = "redis" | "redis-cluster";

/** The name a setup's runs are recorded under. */
export const CROSS_NODE_NAMES: Record<CrossNodeSetup, string> = {
  redis: "3 nodes, one Redis",
  "redis-cluster": "3 nodes, Redis Cluster (3 masters + 3 replicas)",
};

export interface CrossNodeOptions {
  setups: CrossNodeSetup[];
  /** Subscribers over every room and node (rounded down to a multiple of the 3 rooms). */
  subscribers: number;
  repetitions: number;
  /** Offered deliveries/s of each step, over every room (publish rate per room = this / subscribers). */
  deliveryRates: number[];
  stepMs: number;
  /** Time allowed after a step for the last messages to arrive, ms (default 2000). */
  drainMs?: number;
  /** Tries of a step that is not sustained (1: none repeated); every try is recorded. */
  tries?: number;
  /** Passed to every node (a CPU profile directory, a server of another commit). */
  start: StartOptions;
  log: (line: string) => void;
}

/** Switchboard nodes, and rooms (one per node as publisher). */
export const CROSS_NODE_COUNT = 3;
/** Subscribers per HTTP/2 connection (a subscriber set smaller than this has one connection). */
const STREAMS_PER_CONNECTION = 100;

/**
 * The slot ranges `redis-cli --cluster create` gives 3 masters; rooms on one Redis are picked
 * against these, so both setups normally use the same room names.
 */
const THREE_MASTERS: ClusterMaster[] = [
  { port: 0, slots: [[0, 5460]] },
  { port: 1, slots: [[5461, 10922]] },
  { port: 2, slots: [[10923, CLUSTER_SLOTS - 1]] },
];

/** The key whose slot holds a room (every key of a room carries the hash tag `{room}`). */
export const roomLogKey = (room: string) => `sb:{${room}}:log`;

/**
 * One room per master: for each master in order, the first name `xnode-<k>` not yet taken whose
 * log key's slot the master serves.
 * @throws when a master serves no slot a name hashes to within 100,000 tries.
 */
export function pickRooms(
  masters: ClusterMaster[],
): Array<{ room: string; slot: number; master: ClusterMaster }> {
  const picked: Array<{ room: string; slot: number; master: ClusterMaster }> = [];
  for (const master of masters) {
    for (let k = 0; ; k++) {
      if (k >= 100_000) throw new Error(`no room name hashes to master ${master.port}`);
      const room = `xnode-${k}`;
      const slot = slotOf(roomLogKey(room));
      if (picked.some((p) => p.room === room) || masterOfSlot([master], slot) === undefined)
        continue;
      picked.push({ room, slot, master });
      break;
    }
  }
  return picked;
}

/**
 * Where each room's publisher and subscribers go: room i publishes through node i; its
 * `perRoom` subscribers are split over nodes i+1 and i+2 (the first gets the odd one), so each
 * node holds the same number of subscribers when `perRoom` is even, and at most one more otherwise.
 */
export function placeRooms(
  rooms: Array<{ room: string; slot: number; masterPort?: number }>,
  perRoom: number,
): CrossNodeRoom[] {
  return rooms.map((r, i) => {
    const subscribersPerNode = new Array<number>(CROSS_NODE_COUNT).fill(0);
    subscribersPerNode[(i + 1) % CROSS_NODE_COUNT] = Math.ceil(perRoom / 2);
    subscribersPerNode[(i + 2) % CROSS_NODE_COUNT] = Math.floor(perRoom / 2);
    return {
      room: r.room,
      slot: r.slot,
      ...(r.masterPort === undefined ? {} : { masterPort: r.masterPort }),
      publishVia: i % CROSS_NODE_COUNT,
      subscribersPerNode,
    };
  });
}

/** One room's subscribers on one node, and the publisher of that room. */
interface Group {
  subs: SubscriberSet;
  publisher: Publisher;
}

/** Sum of a figure over samples, undefined when any sample lacks it. */
function sumOf(values: Array<number | undefined>): number | undefined {
  return values.some((v) => v === undefined)
    ? undefined
    : values.reduce<number>((a, v) => a + (v as number), 0);
}
function maxOf(values: Array<number | undefined>): number | undefined {
  return values.some((v) => v === undefined) ? undefined : Math.max(...(values as number[]));
}

/** The nodes' figures over a step: CPU summed, loop delay the worst node's, GC summed. */
function nodeFigures(
  before: ServerSample[],
  after: ServerSample[],
  delivered: number,
): Partial<CrossNodeStep> {
  const cpu = after.map((a, i) => a.cpuSeconds - (before[i] as ServerSample).cpuSeconds);
  const seconds = after.map((a, i) => (a.at - (before[i] as ServerSample).at) / 1000);
  const total = cpu.reduce((a, c) => a + c, 0);
  const nodeCpuPercent = cpu.map((c, i) => (c / (seconds[i] as number)) * 100);
  const figures: Partial<CrossNodeStep> = {
    serverCpuSeconds: total,
    serverCpuPercent: nodeCpuPercent.reduce((a, c) => a + c, 0),
    nodeCpuPercent,
    ...(delivered > 0 ? { usPerDelivery: (total * 1e6) / delivered } : {}),
  };
  const probes = after.map((a, i) => [before[i]?.probe, a.probe] as const);
  if (probes.every(([b, a]) => b !== undefined && a !== undefined)) {
    const loopMax = maxOf(probes.map(([, a]) => a?.loopMaxMs));
    const loopP99 = maxOf(probes.map(([, a]) => a?.loopP99Ms));
    const gcMs = sumOf(probes.map(([b, a]) => (a?.gcMs ?? 0) - (b?.gcMs ?? 0)));
    const gcCount = sumOf(probes.map(([b, a]) => (a?.gcCount ?? 0) - (b?.gcCount ?? 0)));
    const gcMax = maxOf(probes.map(([, a]) => a?.gcMaxPauseMs));
    if (loopMax !== undefined) figures.loopMaxMs = loopMax;
    if (loopP99 !== undefined) figures.loopP99Ms = loopP99;
    if (gcMs !== undefined) figures.gcMs = gcMs;
    if (gcCount !== undefined) figures.gcCount = gcCount;
    if (gcMax !== undefined) figures.gcMaxPauseMs = gcMax;
  }
  return figures;
}

const fixed = (n: number | undefined, digits = 1) =>
  n === undefined || Number.isNaN(n) ? "—" : n.toFixed(digits);

interface StepContext {
  groups: Group[];
  publishers: Publisher[];
  nodes: RunningServer[];
  redisPids: readonly number[];
  stepMs: number;
  drainMs: number;
}

const redisCpu = (pids: readonly number[]) =>
  pids.reduce((total, pid) => {
    try {
      return total + cpuSecondsOf(pid);
    } catch {
      return total;
    }
  }, 0);

/** Runs one step at `rate` messages/s per room and measures it over every subscriber set. */
async function runCrossNodeStep(
  ctx: StepContext,
  rate: number,
  attempt: number,
): Promise<CrossNodeStep> {
  const subscribers = ctx.groups.reduce((n, g) => n + g.subs.options.subscribers, 0);
  const before = await Promise.all(ctx.nodes.map((n) => n.sample()));
  const redisBefore = redisCpu(ctx.redisPids);
  const generatorBefore = process.cpuUsage();
  const startedAt = performance.now();
  for (const g of ctx.groups) g.subs.beginStep(g.publisher);
  const failedBefore = ctx.publishers.map((p) => p.failed);
  const sent = await publishOpenLoop(ctx.publishers, rate, ctx.stepMs);
  // Every publisher sent `sent` messages to its room.
  const expected = sent * subscribers;
  const delivered = () => ctx.groups.reduce((n, g) => n + g.subs.delivered, 0);
  const drainDeadline = performance.now() + ctx.drainMs;
  while (delivered() < expected && performance.now() < drainDeadline) await sleep(20);
  for (const g of ctx.groups) g.subs.measuring = false;
  const windowMs = performance.now() - startedAt;
  const generator = process.cpuUsage(generatorBefore);
  const redisAfter = redisCpu(ctx.redisPids);
  const after = await Promise.all(ctx.nodes.map((n) => n.sample(true)));
  const total = delivered();
  const failedSends = ctx.publishers.reduce((n, p, i) => n + p.failed - (failedBefore[i] ?? 0), 0);
  // Every delivery to every subscriber, over every set.
  const latency = createHistogram({ lowest: 1, highest: 600_000_000, figures: 3 });
  for (const g of ctx.groups) latency.add(g.subs.latency);
  const ms = (us: number) => (latency.count === 0 ? Number.NaN : us / 1000);
  const p99 = ms(latency.percentile(99));
  return {
    rate,
    offered: rate * subscribers,
    sent: sent * ctx.publishers.length,
    expected,
    delivered: total,
    deliveriesPerSecond: Math.round(Math.min(total, expected) / (ctx.stepMs / 1000)),
    failedSends,
    subscribersMissing: ctx.groups.reduce((n, g) => n + g.subs.missing(sent), 0),
    p50: ms(latency.percentile(50)),
    p99,
    max: ms(latency.max),
    sustained: total >= expected && failedSends === 0 && p99 <= SUSTAINED_P99_MS,
    attempt,
    windowS: windowMs / 1000,
    generatorCpuPercent: ((generator.user + generator.system) / 1000 / windowMs) * 100,
    redisCpuSeconds: redisAfter - redisBefore,
    redisCpuPercent: ((redisAfter - redisBefore) / (windowMs / 1000)) * 100,
    ...nodeFigures(before, after, total),
  };
}

/** Steps the rate up until a step is not sustained, as lib/fanout-load.ts runSteps does. */
async function stepUp(
  ctx: StepContext,
  options: CrossNodeOptions,
  log: (line: string) => void,
): Promise<CrossNodeStep[]> {
  const results: CrossNodeStep[] = [];
  const subscribers = ctx.groups.reduce((n, g) => n + g.subs.options.subscribers, 0);
  const tries = Math.max(1, options.tries ?? 1);
  const rates = [
    ...new Set(options.deliveryRates.map((d) => Math.max(1, Math.round(d / subscribers)))),
  ];
  for (const rate of rates) {
    let result: CrossNodeStep | undefined;
    for (let attempt = 1; attempt <= tries; attempt++) {
      result = await runCrossNodeStep(ctx, rate, attempt);
      results.push(result);
      log(
        `rate ${String(rate).padStart(5)}/s per room  deliveries/s ${String(result.deliveriesPerSecond).padStart(8)}  ` +
          `delivered ${result.delivered}/${result.expected}` +
          `${result.subscribersMissing ? ` (${result.subscribersMissing} subscribers missed some)` : ""}  ` +
          `p50/p99/max ${fixed(result.p50)}/${fixed(result.p99)}/${fixed(result.max)} ms  ` +
          `nodes CPU ${(result.nodeCpuPercent ?? []).map((c) => fixed(c, 0)).join("+")}%  ` +
          `${fixed(result.usPerDelivery, 2)} µs/delivery  Redis CPU ${fixed(result.redisCpuPercent, 0)}%  ` +
          `loop max ${fixed(result.loopMaxMs)} ms  generator CPU ${fixed(result.generatorCpuPercent, 0)}%  ` +
          `${result.sustained ? "sustained" : "NOT sustained"}${result.failedSends ? ` (${result.failedSends} sends failed)` : ""}` +
          `${tries > 1 ? `  [try ${attempt}/${tries}]` : ""}`,
      );
      await sleep(result.sustained ? 500 : 1500);
      if (result.sustained) break;
    }
    if (!result?.sustained) break;
  }
  return results;
}

/** Resolves once the node's /readyz answers 200 (its store answers). */
async function waitReady(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
      last = `${res.status} ${await res.text()}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(200);
  }
  throw new Error(`${url}/readyz not ready after ${timeoutMs} ms: ${last}`);
}

/** Starts the store of a setup and picks the rooms on it. */
async function startStore(setup: CrossNodeSetup): Promise<{
  store: RunningRedis | RunningRedisCluster;
  pids: readonly number[];
  rooms: Array<{ room: string; slot: number; masterPort?: number }>;
}> {
  if (setup === "redis") {
    const store = await startRedis();
    const rooms = pickRooms(THREE_MASTERS).map(({ room, slot }) => ({ room, slot }));
    return { store, pids: [store.pid], rooms };
  }
  const store = await startRedisCluster();
  try {
    const masters = await store.masters();
    if (masters.length !== CROSS_NODE_COUNT)
      throw new Error(`the cluster has ${masters.length} masters, not ${CROSS_NODE_COUNT}`);
    const rooms = pickRooms(masters).map(({ room, slot, master }) => ({
      room,
      slot,
      masterPort: master.port,
    }));
    // The cluster's own hashing agrees with the slots the rooms were picked by.
    for (const r of rooms) {
      const slot = await store.keySlot(roomLogKey(r.room));
      if (slot !== r.slot)
        throw new Error(`CLUSTER KEYSLOT ${roomLogKey(r.room)} is ${slot}, computed ${r.slot}`);
    }
    return { store, pids: store.pids, rooms };
  } catch (err) {
    await store.stop();
    throw err;
  }
}

/** One run of one setup: store, 3 nodes, subscribers, warm-up, steps; everything stopped after. */
async function runSetup(
  setup: CrossNodeSetup,
  repetition: number,
  options: CrossNodeOptions,
): Promise<CrossNodeRun> {
  const perRoom = Math.floor(options.subscribers / CROSS_NODE_COUNT);
  const tries = Math.max(1, options.tries ?? 1);
  const log = (line: string) => options.log(`crossnode ${setup} rep ${repetition}: ${line}`);
  const run: CrossNodeRun = {
    server: CROSS_NODE_NAMES[setup],
    setup,
    nodes: CROSS_NODE_COUNT,
    subscribers: perRoom * CROSS_NODE_COUNT,
    rooms: [],
    repetition,
    steps: [],
    sustained: 0,
    tries,
    load: loadNow(),
  };
  let store: Awaited<ReturnType<typeof startStore>> | undefined;
  const nodes: RunningServer[] = [];
  const groups: Group[] = [];
  const publishers: Publisher[] = [];
  try {
    store = await startStore(setup);
    run.rooms = placeRooms(store.rooms, perRoom);
    log(
      `rooms ${run.rooms
        .map(
          (r) =>
            `${r.room} (slot ${r.slot}${r.masterPort === undefined ? "" : `, master :${r.masterPort}`}; ` +
            `publisher on node ${r.publishVia}, subscribers ${r.subscribersPerNode.join("/")})`,
        )
        .join(", ")}`,
    );
    for (let i = 0; i < CROSS_NODE_COUNT; i++) {
      nodes.push(
        await startServer("switchboard", {
          ...options.start,
          cores: "0,1",
          env: { ...options.start.env, STORE: store.store.url, INSTANCE_ID: `node-${i}` },
        }),
      );
    }
    await Promise.all(nodes.map((n) => waitReady(n.url)));
    for (const r of run.rooms) {
      const publisher = new Publisher((nodes[r.publishVia] as RunningServer).url, r.room);
      publishers.push(publisher);
      r.subscribersPerNode.forEach((count, node) => {
        if (count === 0) return;
        const subs = new SubscriberSet((nodes[node] as RunningServer).url, {
          subscribers: count,
          connections: Math.max(1, Math.ceil(count / STREAMS_PER_CONNECTION)),
          room: r.room,
          // One user: a JOIN per subscriber would be a fan-out storm of N² deliveries.
          oneUser: true,
        });
        groups.push({ subs, publisher });
      });
    }
    await Promise.all(groups.map((g) => g.subs.settle(Math.max(60_000, perRoom * 20))));
    // Warm-up (JIT, buffers, every node's feed subscription): the lowest rate for 2 s, not recorded.
    const lowest = Math.max(
      1,
      Math.round((options.deliveryRates[0] ?? 5000) / (perRoom * CROSS_NODE_COUNT)),
    );
    await publishOpenLoop(publishers, lowest, 2000);
    await sleep(1000);
    run.load = loadNow();
    run.steps = await stepUp(
      {
        groups,
        publishers,
        nodes,
        redisPids: store.pids,
        stepMs: options.stepMs,
        drainMs: options.drainMs ?? 2000,
      },
      options,
      log,
    );
    run.sustained = run.steps.filter((s) => s.sustained).at(-1)?.deliveriesPerSecond ?? 0;
  } catch (err) {
    run.error = err instanceof Error ? err.message : String(err);
    run.steps = [];
    log(`failed: ${run.error}`);
  } finally {
    for (const p of publishers) p.close();
    for (const g of groups) g.subs.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await store?.store.stop();
  }
  return run;
}

/**
 * Runs every setup `repetitions` times, interleaved (one Redis, cluster, one Redis, …), each
 * with a fresh store and fresh nodes. The runner's own threads get both cores meanwhile and their
 * previous cores back after.
 * @returns one run per setup and repetition; a run that could not start has `error` and no steps.
 */
export async function crossNodeScenario(options: CrossNodeOptions): Promise<CrossNodeRun[]> {
  const runs: CrossNodeRun[] = [];
  const cores = ownCores();
  setOwnCores("0,1");
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++)
      for (const setup of options.setups) runs.push(await runSetup(setup, repetition, options));
  } finally {
    setOwnCores(cores);
  }
  return runs;
}
