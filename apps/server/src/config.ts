import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";

/**
 * How the server stores messages: the embedded SQLite database, memory for throwaway runs, or
 * Redis (STORE=redis://host:port/db) for several nodes.
 */
export type StoreKind = "sqlite" | "memory" | "redis";

/** The server's whole configuration, read and validated once at start-up by {@link loadConfig}. */
export interface Config {
  /** TCP port for every protocol (HTTP/1.1, h2c, and TLS when configured). */
  port: number;
  /** Interface to listen on. */
  host: string;
  /** Directory of the SQLite database (STORE=sqlite), absolute (see {@link loadConfig}). */
  dataDir: string;
  store: StoreKind;
  /** With store "redis": the Redis URL. */
  redisUrl: string | undefined;
  /** Redis history: entries kept per room (0: all). */
  historyMaxLength: number;
  /** Redis history: entries older than this are trimmed, s (0: never). */
  historyMaxAgeS: number;
  /** Redis: how long an idempotency key is remembered, s. */
  idempotencyTtlS: number;
  /** Server processes sharing the port (node:cluster); more than 1 needs Redis. */
  workers: number;
  logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  /** Name of this node in metrics and logs. */
  instanceId: string;
  /** PEM files, absolute; both set means the port speaks TLS with ALPN (h2, http/1.1). */
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  /** Messages a subscriber may fall behind before its stream ends with ResourceExhausted. */
  subscriberQueueLimit: number;
  /** Largest message content, in bytes of UTF-8. */
  maxContentBytes: number;
  /** Largest user name, in bytes of UTF-8. */
  maxUserBytes: number;
  /** Largest request message the server reads, in bytes (connect's readMaxBytes). */
  readMaxBytes: number;
  /** Largest request header block, bytes (HTTP/1.1 maxHeaderSize, HTTP/2 maxHeaderListSize). */
  maxHeaderBytes: number;
  /** Seconds between SYSTEM heartbeats on an idle Chat stream. */
  chatHeartbeatS: number;
  /**
   * How long a member's LEAVE waits for them to subscribe again, ms: a reconnect, a restart or a
   * failover within it is not a departure (no LEAVE, no JOIN); 0: LEAVE at once.
   */
  presenceGraceMs: number;
  /** HS256 shared secret for bearer tokens (AUTH_JWT_SECRET); authentication is on when set. */
  authJwtSecret: string | undefined;
  /** JSON Web Key Set file for bearer tokens (AUTH_JWKS_FILE), absolute; authentication is on when set. */
  authJwksFile: string | undefined;
  /** Messages one identity may publish per second (token bucket refill); 0: no limit. */
  publishRatePerS: number;
  /** Messages one identity may publish in a burst (token bucket size). */
  publishBurst: number;
  /** Streaming calls one identity may have open at once; 0: no limit. */
  maxStreamsPerIdentity: number;
  /** Largest deadline a client may ask for, ms (connect's maxTimeoutMs); 0: no cap. */
  maxTimeoutMs: number;
  /** Time from SIGTERM/SIGINT to a forced exit, ms. */
  shutdownTimeoutMs: number;
  /** Interval of HTTP/2 keepalive PINGs, ms; 0: none. */
  http2KeepaliveMs: number;
  /** An unanswered keepalive PING closes the connection after this, ms. */
  http2KeepaliveTimeoutMs: number;
  /** An HTTP/2 connection with no open stream for this long is closed, ms; 0: never. */
  idleTimeoutMs: number;
  /**
   * A new connection that has not sent its first request bytes (plaintext: enough to tell
   * HTTP/1.1 from HTTP/2) or finished its TLS handshake within this is closed, ms.
   */
  firstByteTimeoutMs: number;
  /** HTTP/1.1: a request's header block must arrive within this from its first byte, ms (408). */
  http1HeadersTimeoutMs: number;
  /** HTTP/1.1: a kept-alive connection with no request for this long is closed, ms. */
  http1IdleTimeoutMs: number;
  /** Open connections in total; more are refused (unavailable, 503); 0: no cap. */
  maxConnections: number;
  /** Open connections from one client IP address; more are refused (resource_exhausted, 429); 0: no cap. */
  maxConnectionsPerIp: number;
  /** HTTP/2: streams a connection may reset within 500 ms of opening them, at once (rapid reset budget). */
  http2ResetBurst: number;
  /** HTTP/2: refill of the rapid reset budget, resets per second. */
  http2ResetRatePerS: number;
  /** Origins allowed to call cross-origin (CORS); empty: same-origin only. */
  corsOrigins: string[];
}

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

function integer(envName: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${envName} must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function oneOf<T extends string>(envName: string, values: readonly T[]) {
  return (value: string): T => {
    if (!(values as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`${envName} must be one of ${values.join(", ")}`);
    }
    return value as T;
  };
}

function storeKind(value: string): string {
  if (value === "sqlite" || value === "memory") return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError("STORE must be sqlite, memory, or a redis://host:port/db URL");
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new InvalidArgumentError("STORE must be sqlite, memory, or a redis://host:port/db URL");
  }
  return value;
}

function workerCount(value: string): number {
  if (value === "auto") return availableParallelism();
  return integer("WORKERS", 1, 256)(value);
}

function nonEmpty(envName: string) {
  return (value: string): string => {
    if (value.trim() === "") throw new InvalidArgumentError(`${envName} must not be empty`);
    return value;
  };
}

function origins(envName: string) {
  return (value: string): string[] => {
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
          `${envName} must be a comma-separated list of origins such as https://app.example.com`,
        );
      }
    }
    return list;
  };
}

// Each option is a flag and an environment variable (commander's Option.env); a flag wins over
// the variable, and both are validated by the same parser.
function option(flags: string, env: string, description: string) {
  return new Option(flags, description).env(env);
}

/** The command line, for `--help` and for parsing. */
export function createConfigCommand(): Command {
  return new Command("switchboard-server")
    .description(
      "Serve chat.ChatService over gRPC, gRPC-Web and Connect on one port (HTTP/1.1 and h2c; TLS with ALPN when TLS_CERT and TLS_KEY are set).",
    )
    .addOption(
      option("--port <n>", "PORT", "TCP port")
        .argParser(integer("PORT", 0, 65535))
        .default(8080),
    )
    .addOption(
      option("--host <addr>", "HOST", "interface to listen on")
        .argParser(nonEmpty("HOST"))
        .default("127.0.0.1"),
    )
    .addOption(
      option(
        "--data-dir <dir>",
        "DATA_DIR",
        "directory of the SQLite database (relative: to where the command runs)",
      )
        .argParser(nonEmpty("DATA_DIR"))
        .default("./data"),
    )
    .addOption(
      option(
        "--store <kind>",
        "STORE",
        "sqlite (durable, in DATA_DIR), memory (lost at exit), or redis://host:port/db (several nodes)",
      )
        .argParser(storeKind)
        .default("sqlite"),
    )
    .addOption(
      option(
        "--workers <n>",
        "WORKERS",
        "server processes on the port (node:cluster); auto: one per core; >1 needs Redis",
      )
        .argParser(workerCount)
        .default(1),
    )
    .addOption(
      option(
        "--history-max-length <n>",
        "HISTORY_MAX_LENGTH",
        "Redis: messages kept per room, 0 for all",
      )
        .argParser(integer("HISTORY_MAX_LENGTH", 0, Number.MAX_SAFE_INTEGER))
        .default(1_000_000),
    )
    .addOption(
      option(
        "--history-max-age-s <n>",
        "HISTORY_MAX_AGE_S",
        "Redis: messages older than this are trimmed, 0 for never",
      )
        .argParser(integer("HISTORY_MAX_AGE_S", 0, Number.MAX_SAFE_INTEGER))
        .default(0),
    )
    .addOption(
      option(
        "--idempotency-ttl-s <n>",
        "IDEMPOTENCY_TTL_S",
        "Redis: seconds a client_message_id is remembered",
      )
        .argParser(integer("IDEMPOTENCY_TTL_S", 1, 365 * 86_400))
        .default(86_400),
    )
    .addOption(
      option("--log-level <level>", "LOG_LEVEL", LOG_LEVELS.join(" | "))
        .argParser(oneOf("LOG_LEVEL", LOG_LEVELS))
        .default("info"),
    )
    .addOption(
      option(
        "--instance-id <name>",
        "INSTANCE_ID",
        "this node's name in metrics and logs (default: host:port)",
      ).argParser(nonEmpty("INSTANCE_ID")),
    )
    .addOption(
      option("--tls-cert <file>", "TLS_CERT", "PEM certificate chain; with --tls-key enables TLS"),
    )
    .addOption(
      option("--tls-key <file>", "TLS_KEY", "PEM private key; with --tls-cert enables TLS"),
    )
    .addOption(
      option(
        "--subscriber-queue-limit <n>",
        "SUBSCRIBER_QUEUE_LIMIT",
        "messages a subscriber may fall behind before it is ended as a slow consumer",
      )
        .argParser(integer("SUBSCRIBER_QUEUE_LIMIT", 1, 1_000_000))
        .default(1024),
    )
    .addOption(
      option(
        "--max-content-bytes <n>",
        "MAX_CONTENT_BYTES",
        "largest message content, bytes of UTF-8",
      )
        .argParser(integer("MAX_CONTENT_BYTES", 1, 1_048_576))
        .default(4096),
    )
    .addOption(
      option("--max-user-bytes <n>", "MAX_USER_BYTES", "largest user name, bytes of UTF-8")
        .argParser(integer("MAX_USER_BYTES", 1, 4096))
        .default(128),
    )
    .addOption(
      option("--read-max-bytes <n>", "READ_MAX_BYTES", "largest request message read, bytes")
        .argParser(integer("READ_MAX_BYTES", 1024, 64 * 1_048_576))
        .default(65_536),
    )
    .addOption(
      option(
        "--max-header-bytes <n>",
        "MAX_HEADER_BYTES",
        "largest request header block, bytes (larger: 431, or RESOURCE_EXHAUSTED for gRPC)",
      )
        .argParser(integer("MAX_HEADER_BYTES", 1024, 1_048_576))
        .default(16_384),
    )
    .addOption(
      option(
        "--chat-heartbeat-s <n>",
        "CHAT_HEARTBEAT_S",
        "seconds between SYSTEM heartbeats on a Chat stream",
      )
        .argParser(integer("CHAT_HEARTBEAT_S", 1, 3600))
        .default(15),
    )
    .addOption(
      option(
        "--presence-grace-ms <n>",
        "PRESENCE_GRACE_MS",
        "how long a member's LEAVE waits for them to reconnect, ms (0: LEAVE at once)",
      )
        .argParser(integer("PRESENCE_GRACE_MS", 0, 3_600_000))
        .default(10_000),
    )
    .addOption(
      option(
        "--auth-jwt-secret <secret>",
        "AUTH_JWT_SECRET",
        "HS256 secret for bearer tokens; turns authentication on (prefer the variable: flags show in ps)",
      ).argParser(nonEmpty("AUTH_JWT_SECRET")),
    )
    .addOption(
      option(
        "--auth-jwks-file <file>",
        "AUTH_JWKS_FILE",
        "JSON Web Key Set file for bearer tokens; turns authentication on",
      ).argParser(nonEmpty("AUTH_JWKS_FILE")),
    )
    .addOption(
      option(
        "--publish-rate <n>",
        "PUBLISH_RATE",
        "messages one identity may publish per second (0: no limit)",
      )
        .argParser(integer("PUBLISH_RATE", 0, 1_000_000))
        .default(0),
    )
    .addOption(
      option("--publish-burst <n>", "PUBLISH_BURST", "messages one identity may publish at once")
        .argParser(integer("PUBLISH_BURST", 1, 1_000_000))
        .default(100),
    )
    .addOption(
      option(
        "--max-streams-per-identity <n>",
        "MAX_STREAMS_PER_IDENTITY",
        "streaming calls one identity may have open (0: no limit)",
      )
        .argParser(integer("MAX_STREAMS_PER_IDENTITY", 0, 1_000_000))
        .default(1000),
    )
    .addOption(
      option(
        "--max-timeout-ms <n>",
        "MAX_TIMEOUT_MS",
        "largest deadline a client may set, ms (0: no cap)",
      )
        .argParser(integer("MAX_TIMEOUT_MS", 0, 2_147_483_647))
        .default(0),
    )
    .addOption(
      option(
        "--shutdown-timeout-ms <n>",
        "SHUTDOWN_TIMEOUT_MS",
        "time from SIGTERM to a forced exit, ms",
      )
        .argParser(integer("SHUTDOWN_TIMEOUT_MS", 100, 600_000))
        .default(10_000),
    )
    .addOption(
      option("--http2-keepalive-ms <n>", "HTTP2_KEEPALIVE_MS", "HTTP/2 PING interval, ms (0: none)")
        .argParser(integer("HTTP2_KEEPALIVE_MS", 0, 86_400_000))
        .default(30_000),
    )
    .addOption(
      option(
        "--http2-keepalive-timeout-ms <n>",
        "HTTP2_KEEPALIVE_TIMEOUT_MS",
        "an unanswered PING closes the connection after this, ms",
      )
        .argParser(integer("HTTP2_KEEPALIVE_TIMEOUT_MS", 100, 600_000))
        .default(10_000),
    )
    .addOption(
      option(
        "--idle-timeout-ms <n>",
        "IDLE_TIMEOUT_MS",
        "an HTTP/2 connection with no open stream is closed after this, ms (0: never)",
      )
        .argParser(integer("IDLE_TIMEOUT_MS", 0, 86_400_000))
        .default(300_000),
    )
    .addOption(
      option(
        "--first-byte-timeout-ms <n>",
        "FIRST_BYTE_TIMEOUT_MS",
        "a new connection that sends no request bytes (TLS: completes no handshake) within this is closed, ms",
      )
        .argParser(integer("FIRST_BYTE_TIMEOUT_MS", 100, 600_000))
        .default(10_000),
    )
    .addOption(
      option(
        "--http1-headers-timeout-ms <n>",
        "HTTP1_HEADERS_TIMEOUT_MS",
        "HTTP/1.1: a request's headers must arrive within this, ms (else 408 and close)",
      )
        .argParser(integer("HTTP1_HEADERS_TIMEOUT_MS", 100, 600_000))
        .default(10_000),
    )
    .addOption(
      option(
        "--http1-idle-timeout-ms <n>",
        "HTTP1_IDLE_TIMEOUT_MS",
        "HTTP/1.1: a kept-alive connection with no request for this long is closed, ms",
      )
        .argParser(integer("HTTP1_IDLE_TIMEOUT_MS", 100, 86_400_000))
        .default(60_000),
    )
    .addOption(
      option(
        "--max-connections <n>",
        "MAX_CONNECTIONS",
        "open connections in total; more are refused with unavailable (0: no cap)",
      )
        .argParser(integer("MAX_CONNECTIONS", 0, 10_000_000))
        .default(10_000),
    )
    .addOption(
      option(
        "--max-connections-per-ip <n>",
        "MAX_CONNECTIONS_PER_IP",
        "open connections from one client address; more are refused with resource_exhausted (0: no cap)",
      )
        .argParser(integer("MAX_CONNECTIONS_PER_IP", 0, 10_000_000))
        .default(256),
    )
    .addOption(
      option(
        "--http2-reset-burst <n>",
        "HTTP2_RESET_BURST",
        "HTTP/2: streams a connection may reset within 500 ms of opening them, at once; beyond: GOAWAY ENHANCE_YOUR_CALM",
      )
        .argParser(integer("HTTP2_RESET_BURST", 1, 100_000))
        .default(50),
    )
    .addOption(
      option(
        "--http2-reset-rate <n>",
        "HTTP2_RESET_RATE",
        "HTTP/2: resets per second refilling that budget",
      )
        .argParser(integer("HTTP2_RESET_RATE", 0, 100_000))
        .default(10),
    )
    .addOption(
      option(
        "--cors-origins <list>",
        "CORS_ORIGINS",
        "comma-separated origins allowed to call from a browser, e.g. https://app.example.com (default: same-origin only)",
      ).argParser(origins("CORS_ORIGINS")),
    );
}

/**
 * The directory relative paths (DATA_DIR, TLS_CERT, TLS_KEY, AUTH_JWKS_FILE) are resolved
 * against: where the user ran the command. npm and pnpm run a package's scripts in the
 * package's directory (`pnpm start` in apps/server) and set INIT_CWD to the directory the
 * command was run from; without INIT_CWD, the working directory.
 */
export function launchDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const init = env.INIT_CWD;
  return init !== undefined && init !== "" ? init : process.cwd();
}

/**
 * Reads and validates the configuration from command-line flags and environment variables.
 * Relative paths become absolute, against {@link launchDirectory}.
 *
 * @throws ConfigError with a one-line message naming the variable, for an invalid value.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Config {
  const command = createConfigCommand()
    .exitOverride()
    .configureOutput({ writeErr: () => {} });
  // commander reads Option.env from process.env; give it the env we were handed.
  const saved = process.env;
  process.env = env;
  let opts: Record<string, unknown>;
  try {
    command.parse(argv as string[], { from: "user" });
    opts = command.opts();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ConfigError(message.replace(/^error: /, ""));
  } finally {
    process.env = saved;
  }
  const base = launchDirectory(env);
  const path = (value: unknown) =>
    typeof value === "string" ? resolve(base, value) : (value as undefined);
  const tlsCert = path(opts.tlsCert);
  const tlsKey = path(opts.tlsKey);
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new ConfigError("TLS_CERT and TLS_KEY must be set together");
  }
  const port = opts.port as number;
  const host = opts.host as string;
  const storeOption = opts.store as string;
  const store: StoreKind =
    storeOption === "sqlite" || storeOption === "memory" ? storeOption : "redis";
  const workers = opts.workers as number;
  if (workers > 1 && store !== "redis") {
    throw new ConfigError(
      `WORKERS=${workers} needs STORE=redis://host:port/db: the ${store} store cannot be shared between processes (set WORKERS=1, or run Redis and point STORE at it)`,
    );
  }
  return {
    port,
    host,
    dataDir: path(opts.dataDir) as string,
    store,
    redisUrl: store === "redis" ? storeOption : undefined,
    historyMaxLength: opts.historyMaxLength as number,
    historyMaxAgeS: opts.historyMaxAgeS as number,
    idempotencyTtlS: opts.idempotencyTtlS as number,
    workers,
    logLevel: opts.logLevel as Config["logLevel"],
    instanceId: (opts.instanceId as string | undefined) ?? `${host}:${port}`,
    tlsCert,
    tlsKey,
    subscriberQueueLimit: opts.subscriberQueueLimit as number,
    maxContentBytes: opts.maxContentBytes as number,
    maxUserBytes: opts.maxUserBytes as number,
    readMaxBytes: opts.readMaxBytes as number,
    maxHeaderBytes: opts.maxHeaderBytes as number,
    chatHeartbeatS: opts.chatHeartbeatS as number,
    presenceGraceMs: opts.presenceGraceMs as number,
    authJwtSecret: opts.authJwtSecret as string | undefined,
    authJwksFile: path(opts.authJwksFile),
    publishRatePerS: opts.publishRate as number,
    publishBurst: opts.publishBurst as number,
    maxStreamsPerIdentity: opts.maxStreamsPerIdentity as number,
    maxTimeoutMs: opts.maxTimeoutMs as number,
    shutdownTimeoutMs: opts.shutdownTimeoutMs as number,
    http2KeepaliveMs: opts.http2KeepaliveMs as number,
    http2KeepaliveTimeoutMs: opts.http2KeepaliveTimeoutMs as number,
    idleTimeoutMs: opts.idleTimeoutMs as number,
    firstByteTimeoutMs: opts.firstByteTimeoutMs as number,
    http1HeadersTimeoutMs: opts.http1HeadersTimeoutMs as number,
    http1IdleTimeoutMs: opts.http1IdleTimeoutMs as number,
    maxConnections: opts.maxConnections as number,
    maxConnectionsPerIp: opts.maxConnectionsPerIp as number,
    http2ResetBurst: opts.http2ResetBurst as number,
    http2ResetRatePerS: opts.http2ResetRate as number,
    corsOrigins: (opts.corsOrigins as string[] | undefined) ?? [],
  };
}

/** An invalid configuration value; its message is one line that names the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
