// The server's settings, each written once: its environment variable (the flag is derived from
// it), its parser, its default and its doc line. Everything else is derived from SETTINGS: the
// `Config` type and `loadConfig` (config.ts), `--help` (createConfigCommand), DEFAULTS (for the
// benchmarks and tests), README.md's configuration table and `.env.example` (settings-docs.ts,
// `pnpm docs:config`; settings-docs.test.ts fails when they disagree). The model is fastify/demo's
// env schema with its `.env.example`.
import { availableParallelism } from "node:os";
import { type DescField, getOption } from "@bufbuild/protobuf";
import { field as fieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { SendMessageRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { InvalidArgumentError } from "commander";

/** How a setting's text (a flag's argument or a variable's value) becomes its value. */
export interface Parser<T> {
  /** The argument's placeholder in `--help`: `<n>`, `<file>`, … */
  readonly arg: string;
  /**
   * The value of `text`; `name` is the variable, for the message.
   *
   * @throws InvalidArgumentError with a one-line message naming `name`, for a bad value.
   */
  parse(text: string, name: string): T;
  /** The text that parses to `value` (for the docs' defaults); String(value) when absent. */
  format?(value: T): string;
}

/** One setting. `D` is the default's type: `undefined` makes the setting optional. */
export interface Setting<T, D extends T | undefined = T> {
  /** The environment variable; the flag is its lower-case, dashed form (PUBLISH_RATE: --publish-rate). */
  readonly env: string;
  readonly parser: Parser<T>;
  readonly default: D;
  /**
   * The default as the docs show it (Markdown) when it is computed at start-up rather than a value
   * (INSTANCE_ID: `HOST:PORT`).
   */
  readonly shownDefault?: string;
  /** One line, Markdown (code spans, links): what it does, its unit, what 0 means. */
  readonly doc: string;
  /** A file or directory: a relative value is resolved against the launch directory (config.ts). */
  readonly path?: true;
}

// Widened for the code that walks every setting (config.ts, settings-docs.ts).
// biome-ignore lint/suspicious/noExplicitAny: a setting of any value type.
export type AnySetting = Setting<any, any>;

// The value's type is the parser's (NoInfer: a default of "info" does not widen it to string).
function setting<T>(spec: Setting<T, NoInfer<T>>): Setting<T> {
  return spec;
}

/** A setting with no default: unset, its value is undefined. */
function optional<T>(spec: Omit<Setting<T, undefined>, "default">): Setting<T, undefined> {
  return { ...spec, default: undefined };
}

function integer(min: number, max: number): Parser<number> {
  return {
    arg: "<n>",
    parse(text, name) {
      const n = Number(text);
      if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
        throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
      }
      return n;
    },
  };
}

/**
 * A string field's `(buf.validate.field).string.max_bytes` in the contract: the hard ceiling of
 * a limit that is a setting (chat.proto, "Request rules"). @throws Error when the field has none.
 */
export function schemaMaxBytes(field: DescField): number {
  const rules = getOption(field, fieldRules);
  const max = rules.type.case === "string" ? rules.type.value.maxBytes : undefined;
  if (max === undefined) throw new Error(`${field.toString()} has no max_bytes rule`);
  return Number(max);
}

/**
 * An integer from 1 to the schema's ceiling on `field`'s length in bytes: the setting may tighten
 * the contract's rule, never loosen it. Above the ceiling, the server refuses to start, naming the
 * setting, the ceiling and the field.
 */
function bytesWithinSchema(field: DescField): Parser<number> {
  const max = schemaMaxBytes(field);
  return {
    arg: "<n>",
    parse(text, name) {
      if (/^\d+$/.test(text.trim()) && Number(text) > max) {
        throw new InvalidArgumentError(
          `${name} must be at most ${max}, the contract's ceiling (chat.proto: ${field.parent.typeName}.${field.name} max_bytes)`,
        );
      }
      return integer(1, max).parse(text, name);
    },
  };
}

function oneOf<T extends string>(values: readonly T[]): Parser<T> {
  return {
    arg: "<level>",
    parse(text, name) {
      if (!(values as readonly string[]).includes(text)) {
        throw new InvalidArgumentError(`${name} must be one of ${values.join(", ")}`);
      }
      return text as T;
    },
  };
}

/** `on` or `off`: true or false. */
const onOff: Parser<boolean> = {
  arg: "<on|off>",
  parse(value, name) {
    if (value !== "on" && value !== "off")
      throw new InvalidArgumentError(`${name} must be on or off`);
    return value === "on";
  },
  format: (on) => (on ? "on" : "off"),
};

/** Any text but an empty (or all blank) one. */
function text(arg: string): Parser<string> {
  return {
    arg,
    parse(value, name) {
      if (value.trim() === "") throw new InvalidArgumentError(`${name} must not be empty`);
      return value;
    },
  };
}

/**
 * STORE's value: the store's kind, with Redis its URL, with Redis Cluster its seed nodes
 * (`host:port`). DATA_DIR is the SQLite store's.
 */
export type StoreChoice =
  | { kind: "sqlite" }
  | { kind: "memory" }
  | { kind: "redis"; url: string }
  | { kind: "redis-cluster"; nodes: readonly string[] };

const CLUSTER_SCHEME = "redis-cluster://";

/** `redis-cluster://host:port,host:port…`: the seed nodes, each `host:port` (port 1 to 65535). */
function clusterNodes(value: string, name: string): readonly string[] {
  const nodes = value
    .slice(CLUSTER_SCHEME.length)
    .replace(/\/$/, "")
    .split(",")
    .map((n) => n.trim());
  for (const node of nodes) {
    const match = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/.exec(node);
    const port = Number(match?.[2]);
    if (match === null || port < 1 || port > 65535) {
      throw new InvalidArgumentError(
        `${name} must list the cluster's seed nodes as redis-cluster://host:port,host:port (got "${node}")`,
      );
    }
  }
  return Object.freeze(nodes);
}

const store: Parser<StoreChoice> = {
  arg: "<kind>",
  parse(value, name) {
    if (value === "sqlite" || value === "memory") return { kind: value };
    if (value.startsWith(CLUSTER_SCHEME)) {
      return { kind: "redis-cluster", nodes: clusterNodes(value, name) };
    }
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {}
    if (url === undefined || (url.protocol !== "redis:" && url.protocol !== "rediss:")) {
      throw new InvalidArgumentError(
        `${name} must be sqlite, memory, a redis://host:port/db URL, or redis-cluster://host:port,host:port`,
      );
    }
    return { kind: "redis", url: value };
  },
  format: (choice) =>
    choice.kind === "redis"
      ? choice.url
      : choice.kind === "redis-cluster"
        ? `${CLUSTER_SCHEME}${choice.nodes.join(",")}`
        : choice.kind,
};

/**
 * An http:// or https:// URL; empty: unset (as the OpenTelemetry SDK reads an empty OTEL_*
 * variable).
 */
const httpUrl: Parser<string | undefined> = {
  arg: "<url>",
  parse(value, name) {
    if (value.trim() === "") return undefined;
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {}
    if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
      throw new InvalidArgumentError(`${name} must be an http:// or https:// URL`);
    }
    return value;
  },
};

/** An integer, or `auto`: one per core. */
const workers: Parser<number> = {
  arg: "<n>",
  parse(value, name) {
    if (value === "auto") return availableParallelism();
    return integer(1, 256).parse(value, name);
  },
};

/** A comma-separated list of origins (scheme://host[:port]); empty: none. */
const origins: Parser<readonly string[]> = {
  arg: "<list>",
  parse(value, name) {
    const list = value
      .split(",")
      .map((o) => o.trim())
      .filter((o) => o !== "");
    for (const origin of list) {
      let url: URL | undefined;
      try {
        url = new URL(origin);
      } catch {}
      if (url === undefined || url.origin !== origin) {
        throw new InvalidArgumentError(
          `${name} must be a comma-separated list of origins such as https://app.example.com`,
        );
      }
    }
    return Object.freeze(list);
  },
  format: (list) => list.join(","),
};

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

/**
 * Every setting, in the order `--help`, the README table and `.env.example` list them. A key is
 * the setting's name in {@link Config}.
 */
export const SETTINGS = {
  port: setting({
    env: "PORT",
    parser: integer(0, 65535),
    default: 8080,
    doc: "TCP port for every protocol",
  }),
  host: setting({
    env: "HOST",
    parser: text("<addr>"),
    default: "127.0.0.1",
    doc: "interface to listen on (`0.0.0.0` for all)",
  }),
  store: setting({
    env: "STORE",
    parser: store,
    default: Object.freeze({ kind: "sqlite" }),
    doc: "`sqlite` (durable, in `DATA_DIR`), `memory` (lost at exit), `redis://host:port/db`, or a Redis Cluster `redis-cluster://host:port,host:port` (seed nodes) (several nodes; see [Running several nodes](#running-several-nodes))",
  }),
  workers: setting({
    env: "WORKERS",
    parser: workers,
    default: 1,
    doc: "server processes sharing the port (node:cluster); `auto`: one per core; more than 1 needs `STORE=sqlite` (the workers share the database file; see [Every core of one machine](#every-core-of-one-machine)) or Redis, not `memory`",
  }),
  historyMaxLength: setting({
    env: "HISTORY_MAX_LENGTH",
    parser: integer(0, Number.MAX_SAFE_INTEGER),
    default: 1_000_000,
    doc: "Redis: messages kept per room, the oldest trimmed first (`0`: all)",
  }),
  historyMaxAgeS: setting({
    env: "HISTORY_MAX_AGE_S",
    parser: integer(0, Number.MAX_SAFE_INTEGER),
    default: 0,
    doc: "Redis: messages older than this are trimmed, s (`0`: never)",
  }),
  idempotencyTtlS: setting({
    env: "IDEMPOTENCY_TTL_S",
    parser: integer(1, 365 * 86_400),
    default: 86_400,
    doc: "Redis: how long a `clientMessageId` is remembered, s (SQLite remembers it for good)",
  }),
  redisWaitReplicas: setting({
    env: "REDIS_WAIT_REPLICAS",
    parser: integer(0, 16),
    default: 0,
    doc: "Redis: replicas that must have a message (`WAIT`) before its send is acknowledged and subscribers see it; fewer within `REDIS_WAIT_TIMEOUT_MS` fail the send with `unavailable` (the message may be stored: retry with the same `clientMessageId`), and a master known to have fewer in sync refuses it at once, unstored (`0`: no wait; see [Running several nodes](#running-several-nodes))",
  }),
  redisWaitTimeoutMs: setting({
    env: "REDIS_WAIT_TIMEOUT_MS",
    parser: integer(1, 60_000),
    default: 1_000,
    doc: "Redis: how long a send waits for `REDIS_WAIT_REPLICAS` replicas, ms",
  }),
  dataDir: setting({
    env: "DATA_DIR",
    parser: text("<dir>"),
    default: "./data",
    doc: "directory of the SQLite database `switchboard.db`, relative to where the command runs",
    path: true,
  }),
  logLevel: setting({
    env: "LOG_LEVEL",
    parser: oneOf(LOG_LEVELS),
    default: "info",
    doc: "`trace`, `debug`, `info`, `warn`, `error`, `fatal`, `silent`",
  }),
  instanceId: optional({
    env: "INSTANCE_ID",
    parser: text("<name>"),
    shownDefault: "`HOST:PORT`",
    doc: "this node's name: the `instance` label of metrics and logs (with `WORKERS` above 1, each worker adds `#` and its number)",
  }),
  otelExporterOtlpEndpoint: optional({
    env: "OTEL_EXPORTER_OTLP_ENDPOINT",
    parser: httpUrl,
    doc: "OpenTelemetry tracing on: the OTLP/HTTP collector that receives the spans (`/v1/traces` is appended), e.g. `http://localhost:4318`; unset: tracing off. The SDK reads the other standard `OTEL_*` variables itself (see [Tracing](#tracing))",
  }),
  otelExporterOtlpTracesEndpoint: optional({
    env: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    parser: httpUrl,
    doc: "the same, for traces only, as a full URL (`http://localhost:4318/v1/traces`); wins over `OTEL_EXPORTER_OTLP_ENDPOINT`",
  }),
  tlsCert: optional({
    env: "TLS_CERT",
    parser: text("<file>"),
    doc: "PEM certificate chain; with `TLS_KEY`: the port speaks TLS with ALPN `h2` and `http/1.1`",
    path: true,
  }),
  tlsKey: optional({
    env: "TLS_KEY",
    parser: text("<file>"),
    doc: "PEM private key of `TLS_CERT`; the two are set together",
    path: true,
  }),
  subscriberQueueLimit: setting({
    env: "SUBSCRIBER_QUEUE_LIMIT",
    parser: integer(1, 1_000_000),
    default: 1024,
    doc: "messages a subscriber may fall behind before its stream ends with `resource_exhausted`",
  }),
  maxContentBytes: setting({
    env: "MAX_CONTENT_BYTES",
    parser: bytesWithinSchema(SendMessageRequestSchema.field.content),
    default: 4096,
    doc: "largest message content, bytes of UTF-8 (at most the contract's ceiling, 1048576)",
  }),
  maxUserBytes: setting({
    env: "MAX_USER_BYTES",
    parser: bytesWithinSchema(SendMessageRequestSchema.field.user),
    default: 128,
    doc: "largest user name, bytes of UTF-8 (at most the contract's ceiling, 4096)",
  }),
  readMaxBytes: setting({
    env: "READ_MAX_BYTES",
    parser: integer(1024, 64 * 1_048_576),
    default: 65_536,
    doc: "largest request message the server reads, bytes (larger: `resource_exhausted`)",
  }),
  maxHeaderBytes: setting({
    env: "MAX_HEADER_BYTES",
    parser: integer(1024, 1_048_576),
    default: 16_384,
    doc: "largest request header block, bytes (larger: HTTP 431, or `resource_exhausted` for gRPC; over TLS, HTTP/1.1 keeps Node's 16 KiB)",
  }),
  chatHeartbeatS: setting({
    env: "CHAT_HEARTBEAT_S",
    parser: integer(1, 3600),
    default: 15,
    doc: "seconds of silence on a `Chat` stream before a SYSTEM heartbeat",
  }),
  presenceGraceMs: setting({
    env: "PRESENCE_GRACE_MS",
    parser: integer(0, 3_600_000),
    default: 10_000,
    doc: "how long a member's LEAVE waits for them to subscribe again, ms: a reconnect, a server restart or a failover within it stores no LEAVE and no JOIN (`0`: LEAVE as soon as the last subscription ends)",
  }),
  authJwtSecret: optional({
    env: "AUTH_JWT_SECRET",
    parser: text("<secret>"),
    doc: "HS256 secret for bearer tokens; set (or `AUTH_JWKS_FILE`): authentication is on (prefer the variable to the flag: flags show in `ps`)",
  }),
  authJwksFile: optional({
    env: "AUTH_JWKS_FILE",
    parser: text("<file>"),
    doc: "JSON Web Key Set file whose keys verify bearer tokens (by `kid`); set: authentication is on",
    path: true,
  }),
  publishRatePerS: setting({
    env: "PUBLISH_RATE",
    parser: integer(0, 1_000_000),
    default: 0,
    doc: "messages one identity may publish per second, sustained (`0`: no limit)",
  }),
  publishBurst: setting({
    env: "PUBLISH_BURST",
    parser: integer(1, 1_000_000),
    default: 100,
    doc: "messages one identity may publish at once (token bucket size)",
  }),
  maxStreamsPerIdentity: setting({
    env: "MAX_STREAMS_PER_IDENTITY",
    parser: integer(0, 1_000_000),
    default: 1000,
    doc: "streams one identity may have open (`0`: no limit)",
  }),
  maxTimeoutMs: setting({
    env: "MAX_TIMEOUT_MS",
    parser: integer(0, 2_147_483_647),
    default: 0,
    doc: "largest deadline a client may set, ms (`0`: no cap)",
  }),
  shutdownTimeoutMs: setting({
    env: "SHUTDOWN_TIMEOUT_MS",
    parser: integer(100, 600_000),
    default: 10_000,
    doc: "time from SIGTERM/SIGINT to a forced exit (status 1), ms",
  }),
  http2KeepaliveMs: setting({
    env: "HTTP2_KEEPALIVE_MS",
    parser: integer(0, 86_400_000),
    default: 30_000,
    doc: "HTTP/2 PING interval, ms (`0`: none)",
  }),
  http2KeepaliveTimeoutMs: setting({
    env: "HTTP2_KEEPALIVE_TIMEOUT_MS",
    parser: integer(100, 600_000),
    default: 10_000,
    doc: "an unanswered PING closes the connection after this, ms",
  }),
  idleTimeoutMs: setting({
    env: "IDLE_TIMEOUT_MS",
    parser: integer(0, 86_400_000),
    default: 300_000,
    doc: "an HTTP/2 connection with no open stream is closed after this, ms (`0`: never)",
  }),
  firstByteTimeoutMs: setting({
    env: "FIRST_BYTE_TIMEOUT_MS",
    parser: integer(100, 600_000),
    default: 10_000,
    doc: "a new connection that has not sent its first request bytes (enough to tell HTTP/1.1 from HTTP/2), or not finished its TLS handshake, within this is closed, ms",
  }),
  http1HeadersTimeoutMs: setting({
    env: "HTTP1_HEADERS_TIMEOUT_MS",
    parser: integer(100, 600_000),
    default: 10_000,
    doc: "HTTP/1.1: a request's header block must arrive within this from its first byte, else 408 and close, ms",
  }),
  http1IdleTimeoutMs: setting({
    env: "HTTP1_IDLE_TIMEOUT_MS",
    parser: integer(100, 86_400_000),
    default: 60_000,
    doc: "HTTP/1.1: a kept-alive connection with no request for this long is closed, ms (node:http adds 1 s)",
  }),
  maxConnections: setting({
    env: "MAX_CONNECTIONS",
    parser: integer(0, 10_000_000),
    default: 10_000,
    doc: "open connections in total; more are refused with `unavailable` (`0`: no cap; keep it under `ulimit -n`)",
  }),
  maxConnectionsPerIp: setting({
    env: "MAX_CONNECTIONS_PER_IP",
    parser: integer(0, 10_000_000),
    default: 256,
    doc: "open connections from one client address; more are refused with `resource_exhausted` (`0`: no cap; set `0` behind a load balancer)",
  }),
  http2ResetBurst: setting({
    env: "HTTP2_RESET_BURST",
    parser: integer(1, 100_000),
    default: 50,
    doc: "HTTP/2: streams a connection may reset within 500 ms of opening them, at once; beyond (rapid reset), GOAWAY `ENHANCE_YOUR_CALM`",
  }),
  http2ResetRatePerS: setting({
    env: "HTTP2_RESET_RATE",
    parser: integer(0, 100_000),
    default: 10,
    doc: "HTTP/2: resets per second that refill that budget",
  }),
  corsOrigins: setting({
    env: "CORS_ORIGINS",
    parser: origins,
    default: Object.freeze([]),
    doc: "comma-separated origins that browsers may call from, e.g. `https://app.example.com` (CORS, `Authorization` allowed); empty: same-origin only",
  }),
  leanLane: setting({
    env: "LEAN_LANE",
    parser: onOff,
    default: true,
    doc: "`on`: SendMessage, SubscribeMessages, ChatService's other unary RPCs and `Health/Check` are served by Switchboard's lean handlers; `off`: every request by connect-es's own (the reference lane), for an operator who hits a bug in the lean lane, and for the differential test (same answers, slower)",
  }),
};

type ValueOf<S> = S extends Setting<infer T, infer D> ? T | D : never;

/** Every setting's value as read: {@link SETTINGS}' keys, each with its parser's type. */
export type Settings = { readonly [K in keyof typeof SETTINGS]: ValueOf<(typeof SETTINGS)[K]> };

/** Every setting's default: what the server runs with when nothing is set. */
export const DEFAULTS: Settings = Object.freeze(
  Object.fromEntries(Object.entries(SETTINGS).map(([key, s]) => [key, s.default])),
) as Settings;

/** The flag of a variable: PUBLISH_RATE: --publish-rate. */
export function flagOf(setting: AnySetting): string {
  return `--${setting.env.toLowerCase().replaceAll("_", "-")}`;
}

/**
 * The default as the docs show it (Markdown: `8080`, `HOST:PORT`); undefined when the setting is
 * unset by default.
 */
export function shownDefault(setting: AnySetting): string | undefined {
  if (setting.shownDefault !== undefined) return setting.shownDefault;
  const text = defaultText(setting);
  return text === undefined || text === "" ? undefined : `\`${text}\``;
}

/**
 * Markdown to plain text, for `--help` and `.env.example`: no backquotes; a link becomes its
 * text, and a link to a README section says so ("Running several nodes in README.md").
 */
export function plainText(markdown: string): string {
  return markdown
    .replace(/\[([^\]]*)\]\(#[^)]*\)/g, "$1 in README.md")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replaceAll("`", "");
}

/** The text of a setting's default, as a variable's value; undefined when it has none. */
export function defaultText(setting: AnySetting): string | undefined {
  if (setting.default === undefined) return undefined;
  return setting.parser.format?.(setting.default) ?? String(setting.default);
}
