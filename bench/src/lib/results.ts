// The shape of bench/results/results.json: every repetition's raw numbers, per scenario.
import type { StepResult } from "./fanout-load.js";

export interface FanoutRun {
  server: string;
  subscribers: number;
  repetition: number;
  steps: StepResult[];
  /** Highest sustained deliveries/s (0 when no step was sustained). */
  sustained: number;
  load: string;
}

export interface UnaryRun {
  server: string;
  /** grpc-h2 | connect-proto-h2 | connect-json-h2 | connect-json-h1 */
  protocol: string;
  repetition: number;
  /** Requests/s from h2load (HTTP/2) or autocannon (HTTP/1.1), successful only. */
  rps: number;
  /** Requests the load tool counted as failed (non-2xx, errors). */
  failed: number;
  /** Latency with one call in flight, ms (client-side histogram). */
  serial: { p50: number; p99: number; max: number };
  /** Latency under load, ms (client-side histogram): h2 probe with 16 in flight, or autocannon. */
  loaded: { p50: number; p99: number; max: number; inFlight: number };
  /** Answers sampled with a real client that were not successes (wrong grpc-status or HTTP status). */
  badAnswers: number;
  load: string;
}

export interface MemoryRun {
  server: string;
  repetition: number;
  baselineRss: number;
  points: Array<{ streams: number; rss: number; bytesPerStream: number }>;
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
  /** When each scenario was last measured (fanout, unary, memory, slow, stream), ISO time. */
  scenarioStartedAt?: Record<string, string>;
}
