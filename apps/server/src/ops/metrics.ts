import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Protocol, RpcCell, RpcType } from "../edge/rpc/rpc-context.js";
import type { MessageStore, WriteContention } from "../store/message-store.js";
import type { Counters } from "../telemetry/telemetry.js";
import { clusterScrape } from "./cluster-metrics.js";

export type { RpcCell };

/** The transport's connection counts (edge/transport/connection-guard.ts), read at scrape time. */
export interface ConnectionGauges {
  /** Open TCP connections. */
  readonly open: number;
  /** Connections closed since start, by reason (`peer`: closed by the client). */
  readonly closedCounts: ReadonlyMap<string, number>;
}

const RPC_LABELS = ["grpc_service", "grpc_method", "grpc_type", "protocol"] as const;

/**
 * The process's Prometheus registry (prom-client): the established gRPC server metrics of
 * go-grpc-prometheus (`grpc_server_started_total`, `grpc_server_handled_total`,
 * `grpc_server_handling_seconds`, `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`)
 * with a `protocol` label, Switchboard's own `switchboard_*` metrics, and prom-client's process
 * metrics. Hot paths only bump plain numbers (a call's {@link RpcCell}, RoomHub.deliveries);
 * counters are filled from them by `collect()` when /metrics is scraped. The domain's counts come
 * from the process's one {@link Counters} (telemetry/telemetry.ts), which StreamMetrics reads
 * too, and it reads {@link RpcMetrics.started}: both report one truth.
 */
/**
 * A counter whose value is read at each scrape from `source()` (nothing when it gives
 * undefined): for totals another part of the server keeps.
 */
function readCounter<T>(
  registry: Registry,
  name: string,
  help: string,
  source: () => T | undefined,
  read: (value: T) => number,
): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const value = source();
      if (value === undefined) return;
      this.reset();
      this.inc(read(value));
    },
  });
}

export class RpcMetrics {
  readonly registry = new Registry();
  /** RPCs started since start, every method and protocol (StreamMetrics' requests_per_second). */
  started = 0;
  private readonly cells = new Map<string, RpcCell>();
  private readonly handlingSeconds: Histogram<(typeof RPC_LABELS)[number]>;
  private readonly storeSeconds: Histogram<"operation" | "outcome">;
  private domain: Counters | undefined;
  private connections: ConnectionGauges | undefined;
  private readonly scrapeAll: () => Promise<string>;

  constructor() {
    const registers = [this.registry];
    const cells = this.cells;
    const fromCells = (read: (cell: RpcCell) => number) =>
      function (this: Counter<(typeof RPC_LABELS)[number]>) {
        this.reset();
        for (const cell of cells.values()) this.inc(cell.labels, read(cell));
      };
    new Counter({
      name: "grpc_server_started_total",
      help: "RPCs started on the server.",
      labelNames: RPC_LABELS,
      registers,
      collect: fromCells((c) => c.started),
    });
    new Counter({
      name: "grpc_server_msg_received_total",
      help: "Request messages received, streaming or not.",
      labelNames: RPC_LABELS,
      registers,
      collect: fromCells((c) => c.received),
    });
    new Counter({
      name: "grpc_server_msg_sent_total",
      help: "Response messages sent, streaming or not.",
      labelNames: RPC_LABELS,
      registers,
      collect: fromCells((c) => c.sent),
    });
    new Counter({
      name: "grpc_server_handled_total",
      help: "RPCs completed on the server, by gRPC code.",
      labelNames: [...RPC_LABELS, "grpc_code"],
      registers,
      collect() {
        this.reset();
        for (const cell of cells.values()) {
          for (const [code, n] of cell.handled) this.inc({ ...cell.labels, grpc_code: code }, n);
        }
      },
    });
    this.handlingSeconds = new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Time from the start of an RPC to its end (the last message of a stream), seconds.",
      labelNames: RPC_LABELS,
      registers,
    });
    this.storeSeconds = new Histogram({
      name: "switchboard_store_seconds",
      help: "Latency of message store calls, seconds.",
      labelNames: ["operation", "outcome"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    const domain = () => this.domain;
    const counter = (name: string, help: string, read: (d: Counters) => number) =>
      readCounter(this.registry, name, help, domain, read);
    counter(
      "switchboard_messages_published_total",
      "Messages stored and fanned out (JOIN and LEAVE included).",
      (d) => d.published(),
    );
    counter(
      "switchboard_deliveries_total",
      "Messages pushed to subscriber queues (fan-out deliveries).",
      (d) => d.delivered(),
    );
    counter(
      "switchboard_slow_consumer_disconnects_total",
      "Subscribers ended with resource_exhausted because their queue overflowed.",
      (d) => d.slowConsumerDisconnects(),
    );
    new Gauge({
      name: "switchboard_subscribers",
      help: "Live room subscribers (SubscribeMessages streams and Chat room sessions).",
      registers,
      collect() {
        const d = domain();
        if (d !== undefined) this.set(d.subscribers());
      },
    });
    new Gauge({
      name: "switchboard_open_streams",
      help: "Open streaming calls, by RPC.",
      labelNames: ["rpc"],
      registers,
      collect() {
        const d = domain();
        if (d === undefined) return;
        this.reset();
        for (const [rpc, n] of d.openStreams()) this.set({ rpc }, n);
      },
    });
    const connections = () => this.connections;
    new Gauge({
      name: "switchboard_connections_open",
      help: "Open client connections (TCP, every protocol; refused ones until they close).",
      registers,
      collect() {
        const c = connections();
        if (c !== undefined) this.set(c.open);
      },
    });
    new Counter({
      name: "switchboard_connections_closed_total",
      help: "Client connections closed, by reason: peer (closed by the client) or the server's reason (first_byte_timeout, header_timeout, idle, keepalive, limit_per_ip, limit_total, rapid_reset, invalid_frames, …).",
      labelNames: ["reason"],
      registers,
      collect() {
        const c = connections();
        if (c === undefined) return;
        this.reset();
        for (const [reason, n] of c.closedCounts) this.inc({ reason }, n);
      },
    });
    collectDefaultMetrics({ register: this.registry });
    this.scrapeAll = clusterScrape(this.registry);
  }

  /** Connects the process's counters (read at scrape time). */
  observeDomain(domain: Counters): void {
    this.domain = domain;
  }

  /** Connects the transport's connection counts (read at scrape time). */
  observeConnections(connections: ConnectionGauges): void {
    this.connections = connections;
  }

  /** The counts of one method over one protocol; one map lookup per call. */
  cell(service: string, method: string, type: RpcType, protocol: Protocol): RpcCell {
    const key = `${service}/${method}/${protocol}`;
    let cell = this.cells.get(key);
    if (cell === undefined) {
      cell = {
        labels: { grpc_service: service, grpc_method: method, grpc_type: type, protocol },
        started: 0,
        received: 0,
        sent: 0,
        handled: new Map(),
      };
      this.cells.set(key, cell);
    }
    return cell;
  }

  /** Records a call's start. */
  callStarted(cell: RpcCell): void {
    cell.started++;
    this.started++;
  }

  /** Records a call's end with its gRPC code name and duration in seconds. */
  callHandled(cell: RpcCell, code: string, seconds: number): void {
    cell.handled.set(code, (cell.handled.get(code) ?? 0) + 1);
    this.handlingSeconds.observe(cell.labels, seconds);
  }

  /**
   * Wraps a store so that every call it answers (append, read, rooms, ping, …) is timed in
   * `switchboard_store_seconds{operation,outcome}`. Methods are wrapped by name, so a store with
   * more methods is timed as well. A store whose writers take turns (SQLite shared by WORKERS=N:
   * MessageStore.contention) also reports its write transactions and the waits for the write
   * lock (`switchboard_store_write_transactions_total`, `…_lock_waits_total`,
   * `…_lock_wait_seconds_total`).
   */
  instrumentStore<S extends MessageStore>(store: S): S {
    if (store.contention !== undefined) this.observeContention(() => store.contention?.());
    const histogram = this.storeSeconds;
    return new Proxy(store, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== "function" || typeof property !== "string") return value;
        return (...args: unknown[]) => {
          const start = performance.now();
          const result: unknown = value.apply(target, args);
          if (!(result instanceof Promise)) return result;
          const done = (outcome: string) =>
            histogram.observe({ operation: property, outcome }, (performance.now() - start) / 1e3);
          result.then(
            () => done("ok"),
            () => done("error"),
          );
          return result;
        };
      },
    });
  }

  private observeContention(read: () => WriteContention | undefined): void {
    const counter = (name: string, help: string, value: (c: WriteContention) => number) =>
      readCounter(this.registry, name, help, read, value);
    counter(
      "switchboard_store_write_transactions_total",
      "Write transactions (group commits) this process began.",
      (c) => c.transactions,
    );
    counter(
      "switchboard_store_write_lock_waits_total",
      "Write transactions that found the store's write lock held by another process and waited.",
      (c) => c.waits,
    );
    counter(
      "switchboard_store_write_lock_wait_seconds_total",
      "Time spent waiting for the store's write lock, seconds.",
      (c) => c.waitSeconds,
    );
  }

  /**
   * The Prometheus text exposition of every metric; under WORKERS=N, of every worker summed
   * (see cluster-metrics.ts).
   */
  scrape(): Promise<string> {
    return this.scrapeAll();
  }
}
