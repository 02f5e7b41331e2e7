// Scenario "cost": server CPU per fan-out delivery at a fixed delivery rate. The fan-out
// scenario's "sustained deliveries/s" needs an idle machine (its steps fail on latency when other
// work shares the cores); CPU seconds spent per delivery barely move with load on the other core,
// and at a fixed rate every server does the same work, so it is the figure issue 19's
// "CPU per delivery ≤ 1.0× plain grpc-js" target reads.
//
// For each repetition, room size and server (interleaved): a fresh server (pinned like the
// fan-out scenario), `subscribers` idle SubscribeMessages streams on subscribers/100 h2c
// connections, one user; then `deliveries` deliveries' worth of messages published open-loop at
// `rate` deliveries/s in total (rate / subscribers messages/s), until every subscriber has every
// message. Reported: the server's CPU seconds over that window ÷ deliveries, µs ("gross"), and
// the same with the server's idle CPU over as long subtracted ("net": timers, keepalive). Every
// delivery is counted and timed, as in the fan-out scenario; a run in which a subscriber missed
// a message or a send failed is recorded as failed, with its figures.
import {
  type FanoutSubscribers,
  generatorFigures,
  Publisher,
  roomName,
} from "../lib/fanout-load.js";
import { defaultThreads, openSubscribers } from "../lib/fanout-threads.js";
import { loadNow } from "../lib/machine.js";
import type { FanoutCostRun } from "../lib/results.js";
import { type ServerKind, type StartOptions, startServer } from "../lib/servers.js";
import { sleep } from "../lib/stats.js";

/** Subscribers per HTTP/2 connection (as in the fan-out scenario). */
const STREAMS_PER_CONNECTION = 100;

export interface CostPoint {
  subscribers: number;
  rooms: number;
  /** Offered deliveries/s. */
  rate: number;
  messages: number;
  expected: number;
  delivered: number;
  subscribersMissing: number;
  failedSends: number;
  /** Server CPU µs per delivery over the window (gross), and net of the idle CPU. */
  usPerDelivery: number;
  netUsPerDelivery: number;
  /** The server's CPU when idle with the streams open, % of one core. */
  idleCpuPercent: number;
  serverCpuPercent: number;
  seconds: number;
  p50: number;
  p99: number;
  max: number;
  connections: number;
  generatorThreads: number;
  generatorCpuPercent?: number | undefined;
  generatorMsPerMessage?: number | undefined;
  generatorLimited?: boolean | undefined;
  /** Set when not every subscriber got every message or a send failed. */
  error?: string;
}

export interface CostOptions {
  subscribers: number;
  /**
   * Rooms the subscribers are spread over, one by one (default 1); the publisher sends to them
   * in turn, so a message reaches subscribers / rooms subscribers.
   */
  rooms?: number | undefined;
  /**
   * The publisher's connections (default 1), used in turn, each for `rooms` messages in a row:
   * with 2, every room gets half its messages through each (with WORKERS=2, one per worker).
   */
  publisherConnections?: number | undefined;
  /** Offered deliveries/s (default 20,000). */
  rate?: number | undefined;
  /** Deliveries in the measured window (default 400,000). */
  deliveries?: number | undefined;
  /** Generator threads (default: lib/fanout-threads.ts defaultThreads). */
  generatorThreads?: number | undefined;
}

/** Measures one server's CPU per delivery at one room size; `server` is started and stopped. */
export async function measureCost(
  kind: ServerKind,
  start: StartOptions,
  options: CostOptions,
): Promise<CostPoint> {
  const { subscribers } = options;
  const rooms = options.rooms ?? 1;
  if (subscribers % rooms !== 0) throw new Error(`${subscribers} subscribers in ${rooms} rooms`);
  const perMessage = subscribers / rooms;
  const sessions = options.publisherConnections ?? 1;
  const rate = options.rate ?? 20_000;
  const totalDeliveries = options.deliveries ?? 400_000;
  const connections = Math.max(1, Math.ceil(subscribers / STREAMS_PER_CONNECTION));
  const threads = options.generatorThreads ?? defaultThreads(connections);
  const server = await startServer(kind, start);
  let set: FanoutSubscribers | undefined;
  let publisher: Publisher | undefined;
  try {
    set = openSubscribers(
      server.url,
      { subscribers, connections, room: "cost", rooms, oneUser: true },
      threads,
    );
    await set.settle(Math.max(120_000, subscribers * 20));
    publisher = new Publisher(
      server.url,
      Array.from({ length: rooms }, (_, k) => roomName("cost", rooms, k)),
      sessions,
    );
    // Every room the same number of messages through each of the publisher's connections.
    const round = rooms * sessions;
    const messages = Math.max(1, Math.ceil(totalDeliveries / perMessage / round)) * round;
    const perSecond = rate / perMessage;
    // The idle baseline: as long as the publishing will take (5 s at most), nothing published.
    const windowMs = (messages / perSecond) * 1000;
    const idle0 = await server.sample(true);
    await sleep(Math.min(windowMs, 5000));
    const idle1 = await server.sample(true);
    const idlePerSecond = (idle1.cpuSeconds - idle0.cpuSeconds) / ((idle1.at - idle0.at) / 1000);
    await set.beginStep(publisher, 0);
    const before = await server.sample(true);
    const generatorBefore = process.cpuUsage();
    const startedAt = performance.now();
    let sent = 0;
    while (sent < messages) {
      const due = Math.min(
        messages,
        Math.floor(((performance.now() - startedAt) / 1000) * perSecond),
      );
      while (sent < due) {
        publisher.publish();
        sent++;
      }
      await sleep(5);
    }
    const expected = messages * perMessage;
    const deadline = performance.now() + 60_000;
    while (set.delivered < expected && performance.now() < deadline) await sleep(20);
    const after = await server.sample(true);
    const generator = process.cpuUsage(generatorBefore);
    const generatorWindowMs = performance.now() - startedAt;
    await set.endStep();
    const delivered = set.delivered;
    const subscribersMissing = set.missing(messages / rooms);
    const cpu = after.cpuSeconds - before.cpuSeconds;
    const seconds = (after.at - before.at) / 1000;
    const h = set.latency;
    const ms = (us: number) => (h.count === 0 ? Number.NaN : us / 1000);
    const g = generatorFigures(generator, generatorWindowMs, messages, threads);
    const error =
      delivered < expected || subscribersMissing > 0 || publisher.failed > 0
        ? `${delivered} of ${expected} delivered, ${subscribersMissing} subscribers missed some, ${publisher.failed} sends failed`
        : undefined;
    return {
      subscribers,
      rooms,
      rate,
      messages,
      expected,
      delivered,
      subscribersMissing,
      failedSends: publisher.failed,
      usPerDelivery: delivered > 0 ? (cpu / delivered) * 1e6 : Number.NaN,
      netUsPerDelivery:
        delivered > 0 ? (Math.max(0, cpu - idlePerSecond * seconds) / delivered) * 1e6 : Number.NaN,
      idleCpuPercent: idlePerSecond * 100,
      serverCpuPercent: (cpu / seconds) * 100,
      seconds,
      p50: ms(h.percentile(50)),
      p99: ms(h.percentile(99)),
      max: ms(h.max),
      connections,
      generatorThreads: threads,
      generatorCpuPercent: g.generatorCpuPercent,
      generatorMsPerMessage: g.generatorMsPerMessage,
      generatorLimited: g.generatorLimited,
      ...(error === undefined ? {} : { error }),
    };
  } finally {
    publisher?.close();
    await set?.close();
    await server.stop();
  }
}

export interface CostScenarioOptions {
  servers: ServerKind[];
  subscriberCounts: number[];
  repetitions: number;
  rate?: number;
  deliveries?: number;
  generatorThreads?: number | undefined;
  start: StartOptions;
  log: (line: string) => void;
}

const fixed = (n: number | undefined, digits = 2) =>
  n === undefined || Number.isNaN(n) ? "—" : n.toFixed(digits);

/** Every server at every room size, interleaved per repetition; failures recorded, not retried. */
export async function fanoutCostScenario(options: CostScenarioOptions): Promise<FanoutCostRun[]> {
  const runs: FanoutCostRun[] = [];
  for (let repetition = 1; repetition <= options.repetitions; repetition++) {
    for (const subscribers of options.subscriberCounts) {
      for (const server of options.servers) {
        const tag = `cost ${server} ${subscribers} subs rep ${repetition}:`;
        const load = loadNow();
        try {
          const point = await measureCost(server, options.start, {
            subscribers,
            rate: options.rate,
            deliveries: options.deliveries,
            generatorThreads: options.generatorThreads,
          });
          runs.push({ server, repetition, load, ...point });
          options.log(
            `${tag} ${fixed(point.usPerDelivery)} µs/delivery (net of idle ${fixed(point.netUsPerDelivery)}; idle ${fixed(point.idleCpuPercent, 1)}% CPU) ` +
              `over ${fixed(point.seconds, 1)} s, ${point.delivered}/${point.expected} delivered, p99 ${fixed(point.p99, 1)} ms, ` +
              `generator CPU ${fixed(point.generatorCpuPercent, 0)}%${point.error ? `  FAILED: ${point.error}` : ""}`,
          );
        } catch (err) {
          const error = err instanceof Error ? err.message : String(err);
          options.log(`${tag} failed: ${error}`);
          runs.push({
            server,
            repetition,
            load,
            subscribers,
            rate: options.rate ?? 20_000,
            usPerDelivery: Number.NaN,
            netUsPerDelivery: Number.NaN,
            error,
          });
        }
      }
    }
  }
  return runs;
}
