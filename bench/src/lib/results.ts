// The shape of bench/results/results.json: every repetition's raw numbers, per scenario.
import type { StepResult } from "./fanout-load.js";

export interface FanoutRun {
  server: string;
  subscribers: number;
  repetition: number;
  steps: StepResult[];
  /** Highest sustained deliveries/s (0 when no step was sustained). */
  sustained: number;
  /**
   * Tries allowed for a step that is not sustained (1: no step repeated). Absent in results.json
   * files written before issue 12, whose runs retried a failed step once and kept only the last try.
   */
  tries?: number;
  load: string;
  /** Why the run has no steps (the server did not start, the subscribers were not all welcomed). */
  error?: string;
  /** HTTP/2 connections the subscribers used (absent before issue 19). */
  connections?: number;
  /** Worker threads of the generator reading the subscribers (0: the publisher's thread). */
  generatorThreads?: number;
  /** Step length, ms. */
  stepMs?: number;
  /** Publish rates (messages/s) the stepping would run, in order, before a step fails. */
  schedule?: number[];
}

/** One step of the cross-node fan-out: the fan-out step's figures, summed over the nodes. */
export interface CrossNodeStep extends StepResult {
  // serverCpuSeconds, serverCpuPercent and usPerDelivery are the sum over the Switchboard nodes;
  // loopMaxMs, loopP99Ms and gcMaxPauseMs the largest node's; gcMs and gcCount the sum.
  /** Each Switchboard node's CPU over the window, % of one core, in node order. */
  nodeCpuPercent?: number[];
  /** Every redis-server process's CPU time in the window (1 or 6 processes), s. */
  redisCpuSeconds?: number;
  /** The same, % of one core. */
  redisCpuPercent?: number;
}

/** Where one room of the cross-node scenario lives and who talks to it. */
export interface CrossNodeRoom {
  room: string;
  /** Hash slot of the room's keys (`sb:{room}:…`), 0 … 16383. */
  slot: number;
  /** Port of the master serving the slot (Redis Cluster only). */
  masterPort?: number;
  /** Index of the node its publisher sends through. */
  publishVia: number;
  /** Subscribers on each node, by node index (0 on the publisher's node). */
  subscribersPerNode: number[];
}

/**
 * A run of the cross-node fan-out (scenarios/cross-node.ts): 3 Switchboard nodes on one Redis
 * ("redis") or on a 3-master Redis Cluster ("redis-cluster"), publishers on nodes other than their
 * rooms' subscribers. `server` is the setup's display name; `subscribers` the total over rooms.
 */
export interface CrossNodeRun extends FanoutRun {
  setup: "redis" | "redis-cluster";
  nodes: number;
  rooms: CrossNodeRoom[];
  steps: CrossNodeStep[];
}

/**
 * Server CPU per fan-out delivery at a fixed delivery rate (scenarios/fanout-cost.ts), one server,
 * room size and repetition. Without `error`, every subscriber got every message.
 */
export interface FanoutCostRun {
  server: string;
  repetition: number;
  load: string;
  subscribers: number;
  /** Rooms the subscribers were spread over, one by one (1: one room). */
  rooms?: number;
  /** Offered deliveries/s. */
  rate: number;
  /** Server CPU µs per delivery over the window. */
  usPerDelivery: number;
  /** The same less the server's idle CPU over as long. */
  netUsPerDelivery: number;
  messages?: number;
  expected?: number;
  delivered?: number;
  subscribersMissing?: number;
  failedSends?: number;
  /** Server CPU with the streams open and nothing published, % of one core. */
  idleCpuPercent?: number;
  serverCpuPercent?: number;
  seconds?: number;
  /** Publish-to-delivery latency over every delivery, ms. */
  p50?: number;
  p99?: number;
  max?: number;
  connections?: number;
  generatorThreads?: number;
  generatorCpuPercent?: number | undefined;
  generatorMsPerMessage?: number | undefined;
  generatorLimited?: boolean | undefined;
  /** Why the run does not count (server did not start, a delivery missed, a send failed). */
  error?: string;
}

/** A run of the cross-worker wake-up measurement (scenarios/wake-up.ts). */
export interface WakeUpRun extends FanoutCostRun {
  /** The setup's display name ("switchboard WORKERS=2 (SQLite)"). */
  setup: string;
  store: "sqlite" | "redis";
  workers: number;
}

export interface UnaryRun {
  server: string;
  /** grpc-h2 | grpc-health-h2 (Health.Check) | connect-proto-h2 | connect-json-h2 | connect-json-h1 */
  protocol: string;
  repetition: number;
  /**
   * Requests/s from h2load (HTTP/2: 10 connections × 10 streams; HTTP/1.1: `--h1`, 50
   * connections; autocannon's 10 connections before issue 19), successful only.
   */
  rps: number;
  /** Requests the load tool counted as failed (non-2xx, errors). */
  failed: number;
  /** Latency with one call in flight, ms (client-side histogram). */
  serial: { p50: number; p99: number; max: number };
  /** Latency under load, ms (client-side histogram): 16 calls in flight. */
  loaded: { p50: number; p99: number; max: number; inFlight: number };
  /** Answers sampled with a real client that were not successes (wrong grpc-status or HTTP status). */
  badAnswers: number;
  load: string;
  /** Why there are no figures (the server did not start, the load tool failed). */
  error?: string;
}

export interface MemoryPoint {
  /** Streams asked for. */
  streams: number;
  /** Streams the server welcomed (all of them, unless `error` says otherwise). */
  opened?: number;
  /** Streams the server ended while they should have stayed idle. */
  ended?: number;
  rss: number;
  /** VmRSS of this point's server process before any stream (each point has a fresh process). */
  baselineRss?: number;
  bytesPerStream: number;
  /** V8 heap used after two forced full GCs, with the streams and before any, bytes (Node servers). */
  heapUsed?: number;
  baselineHeapUsed?: number;
  /** (heapUsed − baselineHeapUsed) / streams opened: live heap per idle stream, bytes. */
  heapBytesPerStream?: number;
  /** Seconds from the first stream's request to the last one's welcome. */
  openSeconds?: number;
  /**
   * Connections the client saw closed before the end (`closed`, or `goaway:<code>` when a GOAWAY
   * came first); absent or empty: none.
   */
  connectionsClosed?: Record<string, number>;
  /** Switchboard: connections it closed during the burst, by its /metrics reason (`peer` left out). */
  serverClosed?: Record<string, number>;
  /** Switchboard: /metrics scraped every 500 ms from the first request until the burst settled. */
  metricsDuringBurst?: {
    scrapes: number;
    answered: number;
    /** The longest a scrape took (or had waited at the end), ms. */
    maxMs: number;
    p50Ms: number;
  };
  error?: string;
}

export interface MemoryRun {
  server: string;
  repetition: number;
  /** The first point's baseline (legacy: one process for every point). */
  baselineRss: number;
  points: MemoryPoint[];
  load: string;
}

export interface SlowConsumerRun {
  server: string;
  repetition: number;
  /** p99 of the other subscribers per 1 s window, ms. */
  p99ByWindow: number[];
  /** Server RSS per 1 s window, bytes. */
  rssByWindow: number[];
  /** grpc-status the slow subscriber ended with ("open" if it did not end). */
  slowStatus: string;
  slowEndedAfterS: number;
  load: string;
}

export interface StreamThroughputRun {
  server: string;
  rpc: string;
  repetition: number;
  messages: number;
  messagesPerSecond: number;
  status: string;
  load: string;
}

export interface Results {
  startedAt: string;
  machine: Record<string, string>;
  quick: boolean;
  repetitions: number;
  fanout: FanoutRun[];
  unary: UnaryRun[];
  memory: MemoryRun[];
  slowConsumer: SlowConsumerRun[];
  streamThroughput: StreamThroughputRun[];
  /**
   * Fan-out at 1,000 subscribers with every process on both cores (scenarios/whole-machine.ts):
   * Switchboard with WORKERS=2 on Redis, seed-go with GOMAXPROCS=2. Absent before issue 12.
   */
  wholeMachine?: FanoutRun[];
  /**
   * Cross-node fan-out (issue 14): 3 nodes on one Redis against 3 nodes on a Redis Cluster.
   * Absent before issue 14.
   */
  crossNode?: CrossNodeRun[];
  /** Server CPU per fan-out delivery at a fixed rate (issue 19). Absent before issue 19. */
  fanoutCost?: FanoutCostRun[];
  /**
   * Cross-worker wake-up cost with the room count (issue 20): CPU per delivery with one room
   * and with many rooms of one subscriber each, WORKERS=2 on each store. Absent before issue 20.
   */
  wakeUp?: WakeUpRun[];
  /** The commit measured: `git rev-parse HEAD`, "+ changes" when the tree differs from it. */
  commit?: string;
  /** Servers left out of this run and why ("not available: SEED_GO_BIN is not set"). */
  unavailable?: Record<string, string>;
  /** When each scenario was last measured (fanout, unary, memory, slow, stream), ISO time. */
  scenarioStartedAt?: Record<string, string>;
  /** The commit each scenario was last measured at (as `commit`). Absent before issue 19. */
  scenarioCommit?: Record<string, string>;
  /** The 1/5/15-minute load average when each scenario started. Absent before issue 19. */
  scenarioLoad?: Record<string, string>;
}

/**
 * Results as the report reads them: server names of older results.json files mapped to today's
 * (the grpc-js peer on Switchboard's Rooms was "grpc-js" before the plain grpc-js peer existed).
 */
export function normalizeResults(results: Results): Results {
  const rename = <T extends { server: string }>(runs: T[] | undefined): T[] =>
    (runs ?? []).map((r) => (r.server === "grpc-js" ? { ...r, server: "grpc-js-rooms" } : r));
  return {
    ...results,
    fanout: rename(results.fanout),
    unary: rename(results.unary),
    memory: rename(results.memory),
    slowConsumer: rename(results.slowConsumer),
    streamThroughput: rename(results.streamThroughput),
    wholeMachine: results.wholeMachine ?? [],
    crossNode: results.crossNode ?? [],
  };
}
