// The fan-out load: S gRPC SubscribeMessages streams to one room over C HTTP/2 connections, and one
// publisher sending SendMessage open-loop at stepped rates. A step is sustained when every message
// reaches every subscriber, no send fails, and the p99 publish-to-delivery latency is ≤ 100 ms.
//
// Latency is measured on every delivery to every subscriber. The publisher numbers its messages
// (content "fanout:<seq>") and keeps each one's send time in a Float64Array in shared memory
// (PublishTimes); a subscriber finds the number in the raw payload (no protobuf decoding), reads
// the clock once per received chunk (lib/clock.ts: monotonic, the same in every thread, so the
// subscribers may live in worker threads: lib/fanout-threads.ts) and records the difference in a
// preallocated HDR histogram (perf_hooks.createHistogram, µs). Per step and per subscriber a
// count of deliveries shows whether every subscriber got every message. Messages of an earlier
// step that arrive late are not counted in the next one.
import type http2 from "node:http2";
import { availableParallelism } from "node:os";
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { monotonicMs } from "./clock.js";
import { connectH2, envelope, grpcHeaders, grpcStatus } from "./grpc-wire.js";
import type { RunningServer, ServerSample } from "./servers.js";
import { sleep } from "./stats.js";

/** The p99 publish-to-delivery latency a sustained step may not exceed, ms. */
export const SUSTAINED_P99_MS = 100;
/**
 * The load generator is the limit of a step when its CPU over the step is at least this share of
 * the cores it may use...
 */
export const GENERATOR_LIMIT_CPU_SHARE = 0.9;
/**
 * ...or when the CPU it spends per published message (sending it and taking in every delivery of
 * it), spread over its threads, is at least this many ms: the generator then reads the last
 * deliveries of one message that much later than the first, and adds up to that much to the
 * latency it reports (a quarter of the p99 bound).
 */
export const GENERATOR_LIMIT_MS_PER_MESSAGE = SUSTAINED_P99_MS / 4;
/** The prefix of a measured message's content; the publisher's sequence number follows. */
const MARKER = Buffer.from("fanout:");

export interface StepResult {
  /** Publish rate, messages/s. */
  rate: number;
  /** Offered deliveries/s (rate × subscribers). */
  offered: number;
  sent: number;
  expected: number;
  delivered: number;
  deliveriesPerSecond: number;
  failedSends: number;
  /** Subscribers that did not receive every message of the step. */
  subscribersMissing?: number;
  /** Publish-to-delivery latency over every delivery to every subscriber, ms. */
  p50: number;
  p99: number;
  max?: number;
  sustained: boolean;
  /** 1 for a rate's first try; 2, 3, … when a step that was not sustained was run again. */
  attempt?: number;
  /**
   * Legacy (results.json before issue 12): this was the second try of a step whose first try
   * failed and was not recorded.
   */
  retried?: boolean;
  /** Seconds from the step's first publish to the end of its drain (the window of the figures below). */
  windowS?: number;
  /** Server CPU time in the window (utime + stime, every thread), s. */
  serverCpuSeconds?: number;
  /** Server CPU time per delivery, µs (serverCpuSeconds ÷ delivered). */
  usPerDelivery?: number;
  /** Server CPU over the window, % of one core. */
  serverCpuPercent?: number;
  /**
   * The load generator's CPU over the window, % of one core: the whole process, every thread
   * (publisher and subscriber threads), from process.cpuUsage().
   */
  generatorCpuPercent?: number;
  /** Cores the generator may run on (its CPU affinity). */
  generatorCores?: number;
  /** Worker threads reading the subscribers (0: the publisher's own thread). */
  generatorThreads?: number;
  /**
   * The generator's CPU per published message, ms, divided by the threads that ran at once
   * (min(threads, cores)): about how long it took to take in one message's deliveries, so the
   * most it can have added to a delivery's measured latency.
   */
  generatorMsPerMessage?: number;
  /**
   * Whether the generator, not the server, may have set this step's figures: CPU ≥ 90% of its
   * cores, or ≥ 25 ms per message (GENERATOR_LIMIT_*).
   */
  generatorLimited?: boolean;
  /** The server's largest event-loop delay in the window, ms (Node servers: lib/server-probe.ts). */
  loopMaxMs?: number;
  /** The server's p99 event-loop delay in the window, ms. */
  loopP99Ms?: number;
  /** The server's GC pauses in the window: total ms, count, longest ms. */
  gcMs?: number;
  gcCount?: number;
  gcMaxPauseMs?: number;
  /** The same as Switchboard's own /metrics (prom-client) saw it. */
  own?: { loopMaxMs: number; gcMs: number; gcCount: number };
}

export interface SubscriberOptions {
  subscribers: number;
  connections: number;
  /**
   * The room; with `rooms` > 1 the rooms are `<room>-0` … `<room>-<rooms-1>` and subscriber i
   * joins room i mod rooms.
   */
  room: string;
  /** How many rooms the subscribers are spread over, one by one (default 1: all in `room`). */
  rooms?: number;
  /**
   * Index of this set's first subscriber among every subscriber of the load (default 0): the
   * subscribers of a load split over threads keep the rooms and names they would have in one set.
   */
  firstIndex?: number;
  /** Every subscriber as one user: one JOIN instead of one per subscriber. */
  oneUser: boolean;
  /** Stream flow-control window of the subscribers' connections, bytes. */
  streamWindow?: number;
}

/** The name of room `index` of a load with `rooms` rooms (SubscriberOptions.room). */
export function roomName(room: string, rooms: number, index: number): string {
  return rooms > 1 ? `${room}-${index % rooms}` : room;
}

/**
 * Send times of a publisher's numbered messages (monotonicMs()), in memory that worker threads
 * share: a ring of 2^18 entries, far more than can be in flight at once.
 */
export class PublishTimes {
  static readonly CAPACITY = 1 << 18;
  private readonly at: Float64Array;
  constructor(readonly buffer = new SharedArrayBuffer(8 * PublishTimes.CAPACITY)) {
    this.at = new Float64Array(buffer);
  }
  /** Records now as the send time of message `seq`. */
  stamp(seq: number): void {
    this.at[seq & (PublishTimes.CAPACITY - 1)] = monotonicMs();
  }
  /** The send time of message `seq`, monotonicMs(). */
  sentAt(seq: number): number {
    return this.at[seq & (PublishTimes.CAPACITY - 1)] as number;
  }
}

/**
 * The subscribers of a fan-out load as runSteps reads them: one SubscriberSet in this thread, or
 * a ThreadedSubscribers spreading them over worker threads (lib/fanout-threads.ts).
 */
export interface FanoutSubscribers {
  readonly options: SubscriberOptions;
  /** Worker threads reading the subscribers (0: this thread). */
  readonly threads: number;
  /** Publish-to-delivery latency of the step's deliveries, µs (complete after endStep()). */
  readonly latency: RecordableHistogram;
  /** Deliveries of measured messages since the step began, every subscriber (live). */
  readonly delivered: number;
  /** Starts counting and timing the messages of `publisher` numbered `firstSeq` and later. */
  beginStep(publisher: Publisher, firstSeq?: number): void | Promise<void>;
  /** Stops counting; the step's latency is in `latency` once it resolves. */
  endStep(): void | Promise<void>;
  /** Subscribers with fewer than `sent` deliveries in this step. */
  missing(sent: number): number;
  settle(timeoutMs?: number): Promise<number>;
  close(): void | Promise<void>;
}

/** Open subscriber streams and what they have received. */
export class SubscriberSet implements FanoutSubscribers {
  readonly threads = 0;
  /** Whether deliveries are counted and timed now. */
  measuring = false;
  /** Deliveries of measured messages since the step began, every subscriber. */
  delivered = 0;
  /** Deliveries per subscriber since the step began (SubscriberOptions.counts, or its own). */
  readonly counts: Uint32Array;
  /** Publish-to-delivery latency of every delivery since the step began (or the last reset), µs. */
  readonly latency: RecordableHistogram = createHistogram({
    lowest: 1,
    highest: 600_000_000,
    figures: 3,
  });
  welcomed = 0;
  /** monotonicMs() when the streams were requested, and when the last one was welcomed. */
  readonly openedAt = monotonicMs();
  allWelcomedAt = Number.NaN;
  /** Streams that ended, by grpc-status. */
  ended = new Map<string, number>();
  lastActivity = monotonicMs();
  readonly sessions: http2.ClientHttp2Session[];
  readonly streams: http2.ClientHttp2Stream[] = [];
  /** The send times of the messages measured (those of one publisher). */
  private times: PublishTimes | undefined;
  private firstSeq = 0;

  /** @param counts where to count deliveries per subscriber (shared memory), else its own. */
  constructor(
    url: string,
    readonly options: SubscriberOptions,
    counts?: Uint32Array,
  ) {
    if (counts !== undefined && counts.length !== options.subscribers)
      throw new Error(`counts holds ${counts.length} subscribers, not ${options.subscribers}`);
    this.counts = counts ?? new Uint32Array(options.subscribers);
    this.sessions = Array.from({ length: options.connections }, () =>
      connectH2(url, options.streamWindow),
    );
    for (let i = 0; i < options.subscribers; i++) this.open(i);
  }

  /**
   * Starts counting and timing the messages of `publisher` numbered `firstSeq` and later (by
   * default: from its next one); clears the counts and the histogram.
   */
  beginStep(publisher: Pick<Publisher, "times" | "seq">, firstSeq: number = publisher.seq): void {
    this.times = publisher.times;
    this.firstSeq = firstSeq;
    this.delivered = 0;
    this.counts.fill(0);
    this.latency.reset();
    this.measuring = true;
  }

  endStep(): void {
    this.measuring = false;
  }

  /** Subscribers with fewer than `sent` deliveries in this step. */
  missing(sent: number): number {
    let n = 0;
    for (const c of this.counts) if (c < sent) n++;
    return n;
  }

  private open(i: number): void {
    const session = this.sessions[i % this.sessions.length] as http2.ClientHttp2Session;
    const stream = session.request(grpcHeaders("SubscribeMessages"));
    this.streams.push(stream);
    let welcomed = false;
    // The unread tail of the last chunk (a message split across DATA frames).
    let pending: Buffer | undefined;
    stream.on("data", (chunk: Buffer) => {
      const now = monotonicMs();
      this.lastActivity = now;
      const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      let at = 0;
      while (buf.length - at >= 5) {
        const end = at + 5 + buf.readUInt32BE(at + 1);
        if (end > buf.length) break;
        if (!welcomed) {
          // The first message is the server's welcome.
          welcomed = true;
          if (++this.welcomed === this.options.subscribers) this.allWelcomedAt = now;
        } else if (this.measuring) {
          this.receive(i, buf, at + 5, end, now);
        }
        at = end;
      }
      if (at < buf.length) pending = buf.subarray(at);
    });
    let headers: http2.IncomingHttpHeaders | undefined;
    stream.on("response", (h) => {
      headers = h;
    });
    stream.on("trailers", (t) => {
      const status = grpcStatus(headers, t);
      this.ended.set(status, (this.ended.get(status) ?? 0) + 1);
    });
    stream.on("error", () => {});
    const index = (this.options.firstIndex ?? 0) + i;
    const request = create(SubscribeRequestSchema, {
      room: roomName(this.options.room, this.options.rooms ?? 1, index),
      user: this.options.oneUser ? "subscriber" : `sub-${index}`,
    });
    stream.end(envelope(toBinary(SubscribeRequestSchema, request)));
  }

  /** One message payload buf[start, end) received by subscriber i at `now`. */
  private receive(i: number, buf: Buffer, start: number, end: number, now: number): void {
    // Only the publisher's messages count; JOIN/LEAVE and the like do not.
    const m = buf.indexOf(MARKER, start);
    if (m < 0 || m >= end) return;
    let seq = 0;
    for (let p = m + MARKER.length; p < end; p++) {
      const c = buf[p] as number;
      if (c < 48 || c > 57) break;
      seq = seq * 10 + (c - 48);
    }
    const times = this.times;
    if (times === undefined || seq < this.firstSeq) return;
    this.delivered++;
    this.counts[i] = (this.counts[i] as number) + 1;
    const us = Math.round((now - times.sentAt(seq)) * 1000);
    this.latency.record(Math.max(us, 1));
  }

  /**
   * Waits until every subscriber is welcomed and the JOIN storm has been delivered (1 s quiet).
   * @returns seconds it took.
   * @throws when not every subscriber is welcomed within `timeoutMs`.
   */
  async settle(timeoutMs = 60_000): Promise<number> {
    const start = Date.now();
    while (
      (this.welcomed < this.options.subscribers || monotonicMs() - this.lastActivity < 1000) &&
      Date.now() - start < timeoutMs
    ) {
      await sleep(200);
    }
    if (this.welcomed < this.options.subscribers)
      throw new Error(`only ${this.welcomed}/${this.options.subscribers} subscribed`);
    return (Date.now() - start) / 1000;
  }

  close(): void {
    for (const s of this.sessions) s.destroy();
  }
}

/**
 * One publisher: numbered SendMessage calls on one h2c connection, each counted when it fails.
 * With several rooms, message `seq` goes to room seq mod rooms (round robin); with several
 * connections, each sends `rooms` messages in a row in turn (so every room gets its messages
 * through every connection alike).
 */
export class Publisher {
  failed = 0;
  /** The next message's sequence number. */
  seq = 0;
  /** When each message was sent, by sequence number (shared with the subscriber threads). */
  readonly times = new PublishTimes();
  private readonly sessions: http2.ClientHttp2Session[];
  private readonly rooms: readonly string[];
  constructor(url: string, room: string | readonly string[], connections = 1) {
    this.rooms = typeof room === "string" ? [room] : room;
    if (this.rooms.length === 0) throw new Error("a publisher needs a room");
    this.sessions = Array.from({ length: Math.max(1, connections) }, () => connectH2(url));
  }
  publish(): void {
    const seq = this.seq++;
    const session = this.sessions[
      Math.floor(seq / this.rooms.length) % this.sessions.length
    ] as http2.ClientHttp2Session;
    const stream = session.request(grpcHeaders("SendMessage"));
    let headers: http2.IncomingHttpHeaders | undefined;
    stream.on("response", (h) => {
      headers = h;
      // Trailers-only answer: the status is in the headers and no trailers follow.
      if (h["grpc-status"] !== undefined && h["grpc-status"] !== "0") this.failed++;
    });
    stream.on("trailers", (t) => {
      if (grpcStatus(headers, t) !== "0") this.failed++;
    });
    stream.on("data", () => {});
    stream.on("error", () => this.failed++);
    const req = create(SendMessageRequestSchema, {
      room: this.rooms[seq % this.rooms.length] as string,
      user: "publisher",
      content: `fanout:${seq}`,
    });
    const body = envelope(toBinary(SendMessageRequestSchema, req));
    this.times.stamp(seq);
    stream.end(body);
  }
  close(): void {
    for (const s of this.sessions) s.close();
  }
}

/**
 * Publishes open-loop at `rate` messages/s for `stepMs` on each of `publishers` (one, or several
 * in lockstep: the same rate each): the schedule never waits for answers.
 * @returns messages sent per publisher.
 */
export async function publishOpenLoop(
  publishers: Publisher | readonly Publisher[],
  rate: number,
  stepMs: number,
): Promise<number> {
  const all = Array.isArray(publishers) ? publishers : [publishers as Publisher];
  let sent = 0;
  const start = performance.now();
  const total = Math.floor((stepMs / 1000) * rate);
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const elapsed = performance.now() - start;
      const due = Math.min(Math.floor((elapsed / 1000) * rate), total);
      while (sent < due) {
        for (const p of all) p.publish();
        sent++;
      }
      if (elapsed >= stepMs) {
        clearInterval(tick);
        resolve();
      }
    }, 5);
  });
  return sent;
}

export interface SteppedOptions {
  /** Offered deliveries/s of each step (publish rate = this / subscribers, at least 1/s). */
  deliveryRates: number[];
  stepMs: number;
  /** Time allowed after a step for the last messages to arrive, ms. */
  drainMs?: number;
  /**
   * How many times a step that is not sustained is run before the stepping stops (default 1: no
   * second try). Every try is returned, with its `attempt`.
   */
  tries?: number;
  /**
   * Run every rate even after a step that is not sustained (default false): for the server's CPU
   * time per delivery at fixed rates on a machine too busy to sustain them.
   */
  everyStep?: boolean;
  /** The server under test: its CPU time, loop delay and GC are read around each step. */
  server?: RunningServer;
  log?: (line: string) => void;
}

const fixed = (n: number | undefined, digits = 1) =>
  n === undefined || Number.isNaN(n) ? "—" : n.toFixed(digits);

/** The server's figures over a step, from its samples before and after. */
function serverFigures(
  before: ServerSample,
  after: ServerSample,
  delivered: number,
): Partial<StepResult> {
  const cpu = after.cpuSeconds - before.cpuSeconds;
  const figures: Partial<StepResult> = {
    serverCpuSeconds: cpu,
    serverCpuPercent: (cpu / ((after.at - before.at) / 1000)) * 100,
    ...(delivered > 0 ? { usPerDelivery: (cpu * 1e6) / delivered } : {}),
  };
  if (before.probe !== undefined && after.probe !== undefined) {
    figures.loopMaxMs = after.probe.loopMaxMs;
    figures.loopP99Ms = after.probe.loopP99Ms;
    figures.gcMs = after.probe.gcMs - before.probe.gcMs;
    figures.gcCount = after.probe.gcCount - before.probe.gcCount;
    figures.gcMaxPauseMs = after.probe.gcMaxPauseMs;
  }
  if (before.own !== undefined && after.own !== undefined) {
    figures.own = {
      loopMaxMs: after.own.loopMaxMs,
      gcMs: after.own.gcMs - before.own.gcMs,
      gcCount: after.own.gcCount - before.own.gcCount,
    };
  }
  return figures;
}

/** The cores this process may run on (its CPU affinity: taskset). */
export function generatorCores(): number {
  return availableParallelism();
}

/**
 * The generator's figures over a step: its CPU (every thread of this process), the CPU per
 * published message spread over the threads that ran at once, and whether it was the limit.
 */
export function generatorFigures(
  cpu: NodeJS.CpuUsage,
  windowMs: number,
  sent: number,
  threads: number,
  cores = generatorCores(),
): Pick<
  StepResult,
  | "generatorCpuPercent"
  | "generatorCores"
  | "generatorThreads"
  | "generatorMsPerMessage"
  | "generatorLimited"
> {
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const percent = (cpuMs / windowMs) * 100;
  const parallel = Math.max(1, Math.min(threads, cores));
  const perMessage = sent > 0 ? cpuMs / sent / parallel : Number.NaN;
  return {
    generatorCpuPercent: percent,
    generatorCores: cores,
    generatorThreads: threads,
    generatorMsPerMessage: perMessage,
    generatorLimited:
      percent >= GENERATOR_LIMIT_CPU_SHARE * 100 * cores ||
      perMessage >= GENERATOR_LIMIT_MS_PER_MESSAGE,
  };
}

/** Runs one step at `rate` messages/s and measures it. */
async function runStep(
  subs: FanoutSubscribers,
  publisher: Publisher,
  rate: number,
  attempt: number,
  options: SteppedOptions,
): Promise<StepResult> {
  const n = subs.options.subscribers;
  const before = await options.server?.sample();
  await subs.beginStep(publisher);
  const generatorBefore = process.cpuUsage();
  const startedAt = performance.now();
  const failedBefore = publisher.failed;
  const sent = await publishOpenLoop(publisher, rate, options.stepMs);
  const expected = sent * n;
  const drainDeadline = performance.now() + (options.drainMs ?? 2000);
  while (subs.delivered < expected && performance.now() < drainDeadline) await sleep(20);
  const windowMs = performance.now() - startedAt;
  const generator = process.cpuUsage(generatorBefore);
  const after = await options.server?.sample(true);
  await subs.endStep();
  const delivered = subs.delivered;
  const failedSends = publisher.failed - failedBefore;
  const subscribersMissing = subs.missing(sent);
  const h = subs.latency;
  const ms = (us: number) => (h.count === 0 ? Number.NaN : us / 1000);
  const p99 = ms(h.percentile(99));
  return {
    rate,
    offered: rate * n,
    sent,
    expected,
    delivered,
    deliveriesPerSecond: Math.round(Math.min(delivered, expected) / (options.stepMs / 1000)),
    failedSends,
    subscribersMissing,
    p50: ms(h.percentile(50)),
    p99,
    max: ms(h.max),
    sustained:
      delivered >= expected &&
      subscribersMissing === 0 &&
      failedSends === 0 &&
      p99 <= SUSTAINED_P99_MS,
    attempt,
    windowS: windowMs / 1000,
    ...generatorFigures(generator, windowMs, sent, subs.threads),
    ...(before !== undefined && after !== undefined ? serverFigures(before, after, delivered) : {}),
  };
}

/**
 * Steps the publish rate up until a step is not sustained (that step is the last one returned).
 * A step that is not sustained is run again only when `tries` > 1, and every try is returned.
 */
export async function runSteps(
  subs: FanoutSubscribers,
  publisher: Publisher,
  options: SteppedOptions,
): Promise<StepResult[]> {
  const results: StepResult[] = [];
  const n = subs.options.subscribers;
  const tries = Math.max(1, options.tries ?? 1);
  // At large rooms several offered loads round to the same publish rate (at least 1/s): once each.
  const rates = [...new Set(options.deliveryRates.map((d) => Math.max(1, Math.round(d / n))))];
  for (const rate of rates) {
    let result: StepResult | undefined;
    for (let attempt = 1; attempt <= tries; attempt++) {
      result = await runStep(subs, publisher, rate, attempt, options);
      results.push(result);
      options.log?.(
        `rate ${String(rate).padStart(6)}/s  deliveries/s ${String(result.deliveriesPerSecond).padStart(8)}  ` +
          `delivered ${result.delivered}/${result.expected}` +
          `${result.subscribersMissing ? ` (${result.subscribersMissing} subscribers missed some)` : ""}  ` +
          `p50/p99/max ${fixed(result.p50)}/${fixed(result.p99)}/${fixed(result.max)} ms  ` +
          `loop max ${fixed(result.loopMaxMs)} ms  GC ${fixed(result.gcMs, 0)} ms/${result.gcCount ?? "—"}  ` +
          `${result.own ? `(own /metrics: loop max ${fixed(result.own.loopMaxMs)} ms  GC ${fixed(result.own.gcMs, 0)} ms/${result.own.gcCount})  ` : ""}` +
          `${fixed(result.usPerDelivery, 2)} µs/delivery  server CPU ${fixed(result.serverCpuPercent, 0)}%  ` +
          `generator CPU ${fixed(result.generatorCpuPercent, 0)}% of ${result.generatorCores} core(s), ` +
          `${result.generatorThreads} thread(s), ${fixed(result.generatorMsPerMessage, 2)} ms/message` +
          `${result.generatorLimited ? " (the generator is the limit)" : ""}  ` +
          `${result.sustained ? "sustained" : "NOT sustained"}${result.failedSends ? ` (${result.failedSends} sends failed)` : ""}` +
          `${tries > 1 ? `  [try ${attempt}/${tries}]` : ""}`,
      );
      // A server that fell behind gets time to catch up before the next step or try.
      await sleep(result.sustained ? 500 : 1500);
      if (result.sustained) break;
    }
    if (!result?.sustained && options.everyStep !== true) break;
  }
  return results;
}
