// The fan-out load: S gRPC SubscribeMessages streams to one room over C HTTP/2 connections, and one
// publisher sending SendMessage open-loop at stepped rates. A step is sustained when every message
// reaches every subscriber, no send fails, and the p99 publish-to-delivery latency is ≤ 100 ms.
//
// Latency is measured on every delivery to every subscriber. The publisher numbers its messages
// (content "fanout:<seq>") and keeps each one's send time in a Float64Array; a subscriber finds the
// number in the raw payload (no protobuf decoding), reads the clock once per received chunk
// (performance.now(), monotonic, the same clock as the publisher's: both live in this process)
// and records the difference in a preallocated HDR histogram (perf_hooks.createHistogram, µs).
// Per step and per subscriber a count of deliveries shows whether every subscriber got every
// message. Messages of an earlier step that arrive late are not counted in the next one.
import type http2 from "node:http2";
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { connectH2, envelope, grpcHeaders, grpcStatus } from "./grpc-wire.js";
import type { RunningServer, ServerSample } from "./servers.js";
import { sleep } from "./stats.js";

/** The p99 publish-to-delivery latency a sustained step may not exceed, ms. */
export const SUSTAINED_P99_MS = 100;
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
  /** This load generator's CPU over the window, % of one core (near 100: the generator is the limit). */
  generatorCpuPercent?: number;
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
  room: string;
  /** Every subscriber as one user: one JOIN instead of one per subscriber. */
  oneUser: boolean;
  /** Stream flow-control window of the subscribers' connections, bytes. */
  streamWindow?: number;
}

/** Open subscriber streams and what they have received. */
export class SubscriberSet {
  /** Whether deliveries are counted and timed now. */
  measuring = false;
  /** Deliveries of measured messages since the step began, every subscriber. */
  delivered = 0;
  /** Deliveries per subscriber since the step began. */
  readonly counts: Uint32Array;
  /** Publish-to-delivery latency of every delivery since the step began (or the last reset), µs. */
  readonly latency: RecordableHistogram = createHistogram({
    lowest: 1,
    highest: 600_000_000,
    figures: 3,
  });
  welcomed = 0;
  /** performance.now() when the streams were requested, and when the last one was welcomed. */
  readonly openedAt = performance.now();
  allWelcomedAt = Number.NaN;
  /** Streams that ended, by grpc-status. */
  ended = new Map<string, number>();
  lastActivity = performance.now();
  readonly sessions: http2.ClientHttp2Session[];
  readonly streams: http2.ClientHttp2Stream[] = [];
  /** Whose numbered messages are measured (its send times grow while a step runs). */
  private publisher: Publisher | undefined;
  private firstSeq = 0;

  constructor(
    url: string,
    readonly options: SubscriberOptions,
  ) {
    this.counts = new Uint32Array(options.subscribers);
    this.sessions = Array.from({ length: options.connections }, () =>
      connectH2(url, options.streamWindow),
    );
    for (let i = 0; i < options.subscribers; i++) this.open(i);
  }

  /**
   * Starts counting and timing the messages of `publisher` numbered `firstSeq` and later (by
   * default: from its next one); clears the counts and the histogram.
   */
  beginStep(publisher: Publisher, firstSeq = publisher.seq): void {
    this.publisher = publisher;
    this.firstSeq = firstSeq;
    this.delivered = 0;
    this.counts.fill(0);
    this.latency.reset();
    this.measuring = true;
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
      const now = performance.now();
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
    const request = create(SubscribeRequestSchema, {
      room: this.options.room,
      user: this.options.oneUser ? "subscriber" : `sub-${i}`,
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
    const sentAt = this.publisher?.sentAt;
    if (sentAt === undefined || seq < this.firstSeq || seq >= sentAt.length) return;
    this.delivered++;
    this.counts[i] = (this.counts[i] as number) + 1;
    const us = Math.round((now - (sentAt[seq] as number)) * 1000);
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
      (this.welcomed < this.options.subscribers || performance.now() - this.lastActivity < 1000) &&
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

/** One publisher: numbered SendMessage calls on one h2c connection, each counted when it fails. */
export class Publisher {
  failed = 0;
  /** The next message's sequence number. */
  seq = 0;
  /** performance.now() at which each message was sent, by sequence number. */
  sentAt = new Float64Array(1 << 16);
  private readonly session: http2.ClientHttp2Session;
  constructor(
    url: string,
    private readonly room: string,
  ) {
    this.session = connectH2(url);
  }
  publish(): void {
    const seq = this.seq++;
    if (seq >= this.sentAt.length) {
      const grown = new Float64Array(this.sentAt.length * 2);
      grown.set(this.sentAt);
      this.sentAt = grown;
    }
    const stream = this.session.request(grpcHeaders("SendMessage"));
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
      room: this.room,
      user: "publisher",
      content: `fanout:${seq}`,
    });
    const body = envelope(toBinary(SendMessageRequestSchema, req));
    this.sentAt[seq] = performance.now();
    stream.end(body);
  }
  close(): void {
    this.session.close();
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

/** Runs one step at `rate` messages/s and measures it. */
async function runStep(
  subs: SubscriberSet,
  publisher: Publisher,
  rate: number,
  attempt: number,
  options: SteppedOptions,
): Promise<StepResult> {
  const n = subs.options.subscribers;
  const before = await options.server?.sample();
  const generatorBefore = process.cpuUsage();
  const startedAt = performance.now();
  subs.beginStep(publisher);
  const failedBefore = publisher.failed;
  const sent = await publishOpenLoop(publisher, rate, options.stepMs);
  const expected = sent * n;
  const drainDeadline = performance.now() + (options.drainMs ?? 2000);
  while (subs.delivered < expected && performance.now() < drainDeadline) await sleep(20);
  subs.measuring = false;
  const windowMs = performance.now() - startedAt;
  const generator = process.cpuUsage(generatorBefore);
  const after = await options.server?.sample(true);
  const failedSends = publisher.failed - failedBefore;
  const h = subs.latency;
  const ms = (us: number) => (h.count === 0 ? Number.NaN : us / 1000);
  const p99 = ms(h.percentile(99));
  return {
    rate,
    offered: rate * n,
    sent,
    expected,
    delivered: subs.delivered,
    deliveriesPerSecond: Math.round(Math.min(subs.delivered, expected) / (options.stepMs / 1000)),
    failedSends,
    subscribersMissing: subs.missing(sent),
    p50: ms(h.percentile(50)),
    p99,
    max: ms(h.max),
    sustained: subs.delivered >= expected && failedSends === 0 && p99 <= SUSTAINED_P99_MS,
    attempt,
    windowS: windowMs / 1000,
    generatorCpuPercent: ((generator.user + generator.system) / 1000 / windowMs) * 100,
    ...(before !== undefined && after !== undefined
      ? serverFigures(before, after, subs.delivered)
      : {}),
  };
}

/**
 * Steps the publish rate up until a step is not sustained (that step is the last one returned).
 * A step that is not sustained is run again only when `tries` > 1, and every try is returned.
 */
export async function runSteps(
  subs: SubscriberSet,
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
          `generator CPU ${fixed(result.generatorCpuPercent, 0)}%  ` +
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
