// The fan-out load: S gRPC SubscribeMessages streams to one room over C HTTP/2 connections, and one
// publisher sending SendMessage open-loop at stepped rates. A step is sustained when every message
// reaches every subscriber, no send fails, and the p99 publish-to-delivery latency is ≤ 100 ms.
// Latency is measured from the publisher's send to the subscriber's receipt, both in this process,
// on a sample of 50 subscribers (decoding every message would load the generator).
import type http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  MessageSchema,
  SendMessageRequestSchema,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { connectH2, EnvelopeReader, envelope, grpcHeaders, grpcStatus } from "./grpc-wire.js";
import { percentile, sleep } from "./stats.js";

/** Subscribers whose messages are decoded for latency. */
const SAMPLED = 50;
/** The p99 publish-to-delivery latency a sustained step may not exceed, ms. */
export const SUSTAINED_P99_MS = 100;

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
  p50: number;
  p99: number;
  sustained: boolean;
  /** The step was run twice because its first try was not sustained (this is the second). */
  retried?: boolean;
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
  measuring = false;
  delivered = 0;
  latencies: number[] = [];
  welcomed = 0;
  /** Streams that ended, by grpc-status. */
  ended = new Map<string, number>();
  lastActivity = performance.now();
  readonly sessions: http2.ClientHttp2Session[];
  readonly streams: http2.ClientHttp2Stream[] = [];

  constructor(
    url: string,
    readonly options: SubscriberOptions,
  ) {
    this.sessions = Array.from({ length: options.connections }, () =>
      connectH2(url, options.streamWindow),
    );
    for (let i = 0; i < options.subscribers; i++) this.open(i);
  }

  private open(i: number): void {
    const sampled = i < SAMPLED;
    const session = this.sessions[i % this.sessions.length] as http2.ClientHttp2Session;
    const stream = session.request(grpcHeaders("SubscribeMessages"));
    this.streams.push(stream);
    let first = true;
    const reader = new EnvelopeReader((payload) => {
      this.lastActivity = performance.now();
      if (first) {
        first = false;
        this.welcomed++;
        return;
      }
      if (!this.measuring) return;
      // Only the publisher's messages count; JOIN/LEAVE of other subscribers do not.
      if (sampled) {
        const m = fromBinary(MessageSchema, payload);
        if (!m.content.startsWith("t:")) return;
        this.delivered++;
        this.latencies.push(performance.now() - Number(m.content.slice(2)));
      } else if (payload.includes("t:")) {
        this.delivered++;
      }
    });
    let headers: http2.IncomingHttpHeaders | undefined;
    stream.on("response", (h) => {
      headers = h;
    });
    stream.on("trailers", (t) => {
      const status = grpcStatus(headers, t);
      this.ended.set(status, (this.ended.get(status) ?? 0) + 1);
    });
    stream.on("data", (chunk: Buffer) => reader.push(chunk));
    stream.on("error", () => {});
    const request = create(SubscribeRequestSchema, {
      room: this.options.room,
      user: this.options.oneUser ? "subscriber" : `sub-${i}`,
    });
    stream.end(envelope(toBinary(SubscribeRequestSchema, request)));
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

/** One publisher: SendMessage calls on one h2c connection, each counted when it fails. */
export class Publisher {
  failed = 0;
  private readonly session: http2.ClientHttp2Session;
  constructor(
    url: string,
    private readonly room: string,
  ) {
    this.session = connectH2(url);
  }
  publish(): void {
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
      content: `t:${performance.now()}`,
    });
    stream.end(envelope(toBinary(SendMessageRequestSchema, req)));
  }
  close(): void {
    this.session.close();
  }
}

/** Publishes open-loop at `rate` messages/s for `stepMs`: the schedule never waits for answers. */
export async function publishOpenLoop(
  publisher: Publisher,
  rate: number,
  stepMs: number,
): Promise<number> {
  let sent = 0;
  const start = performance.now();
  const total = Math.floor((stepMs / 1000) * rate);
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const elapsed = performance.now() - start;
      const due = Math.min(Math.floor((elapsed / 1000) * rate), total);
      while (sent < due) {
        publisher.publish();
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
  /** Offered deliveries/s of each step (publish rate = this / subscribers). */
  deliveryRates: number[];
  stepMs: number;
  /** Time allowed after a step for the last messages to arrive, ms. */
  drainMs?: number;
  log?: (line: string) => void;
}

/**
 * Steps the publish rate up until a step is not sustained (that step is the last one returned).
 */
export async function runSteps(
  subs: SubscriberSet,
  publisher: Publisher,
  options: SteppedOptions,
): Promise<StepResult[]> {
  const results: StepResult[] = [];
  const n = subs.options.subscribers;
  for (let i = 0, retried = false; i < options.deliveryRates.length; ) {
    const offered = options.deliveryRates[i] as number;
    const rate = Math.max(1, Math.round(offered / n));
    subs.delivered = 0;
    subs.latencies = [];
    subs.measuring = true;
    const failedBefore = publisher.failed;
    const sent = await publishOpenLoop(publisher, rate, options.stepMs);
    const expected = sent * n;
    const drainDeadline = performance.now() + (options.drainMs ?? 2000);
    while (subs.delivered < expected && performance.now() < drainDeadline) await sleep(50);
    subs.measuring = false;
    const sorted = subs.latencies.sort((a, b) => a - b);
    const failedSends = publisher.failed - failedBefore;
    const p99 = percentile(sorted, 99);
    const result: StepResult = {
      rate,
      offered: rate * n,
      sent,
      expected,
      delivered: subs.delivered,
      deliveriesPerSecond: Math.round(Math.min(subs.delivered, expected) / (options.stepMs / 1000)),
      failedSends,
      p50: percentile(sorted, 50),
      p99,
      sustained: subs.delivered >= expected && failedSends === 0 && p99 <= SUSTAINED_P99_MS,
    };
    options.log?.(
      `rate ${String(rate).padStart(6)}/s  deliveries/s ${String(result.deliveriesPerSecond).padStart(8)}  ` +
        `delivered ${result.delivered}/${expected}  p50 ${result.p50.toFixed(1)} ms  p99 ${p99.toFixed(1)} ms  ` +
        `${result.sustained ? "sustained" : "NOT sustained"}${failedSends ? ` (${failedSends} sends failed)` : ""}`,
    );
    // A server that fell behind gets time to catch up before the next try.
    await sleep(result.sustained ? 500 : 1500);
    // One stall (a GC pause, a neighbour on the shared machine) can push a short step's p99 over
    // the line: a step counts as not sustained only when it fails twice in a row.
    if (!result.sustained && !retried) {
      retried = true;
      options.log?.("not sustained: trying this step once more");
      continue;
    }
    results.push({ ...result, retried });
    if (!result.sustained) break;
    i++;
    retried = false;
  }
  return results;
}
