import cluster from "node:cluster";
import { type Config, ConfigError, createConfigCommand, loadConfig } from "./config.js";

// The process entry: configuration, logger, listen, signals. Everything else is in app.ts, which
// is imported only once the configuration is valid: `--help` and a bad setting answer at once,
// without loading Fastify, the stores and every protocol. (`pnpm start -- --help` passes the
// `--` through.)
const argv = process.argv.slice(2).filter((arg, i) => !(i === 0 && arg === "--"));
if (argv.includes("--help") || argv.includes("-h")) {
  process.stdout.write(createConfigCommand().helpInformation());
  process.exit(0);
}

let config: Config;
try {
  config = loadConfig(argv);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`switchboard-server: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const { createLogger } = await import("./logger.js");
if (config.workers > 1 && cluster.isPrimary) {
  await checkPortOnce();
  const { runPrimary } = await import("./cluster.js");
  const { serveClusterMetrics } = await import("./ops/cluster-metrics.js");
  const { clusterWorkerLinks } = await import("./cluster-channel.js");
  const { serveMachineTelemetry } = await import("./telemetry/machine.js");
  const links = clusterWorkerLinks();
  // The workers share the SQLite file: the primary prepares it and coordinates them.
  if (config.store.kind === "sqlite") await startCoordinator(config.store.dataDir);
  runPrimary(config, createLogger(config, { sync: true }).logger);
  // /metrics on any worker reports every worker (ops/cluster-metrics.ts), StreamMetrics the
  // whole machine (telemetry/machine.ts).
  serveClusterMetrics();
  serveMachineTelemetry(links, config.instanceId);
} else {
  await startServer();
}

async function startServer(): Promise<void> {
  const { buildApp } = await import("./app.js");
  const { startupErrorMessage, storeLocation } = await import("./startup-error.js");
  const { logger, logTail } = createLogger(config);
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  // The handlers go in before anything starts: a SIGTERM or SIGINT that comes while the server
  // starts (a WORKERS primary stopping right after its workers began to listen, a supervisor
  // stopping a slow start) would otherwise kill the process at once, with no graceful shutdown.
  // Shutdown then begins once the app is built (and listening, if it had begun to listen);
  // SHUTDOWN_TIMEOUT_MS counts from the signal either way.
  let running: NonNullable<typeof app> | undefined;
  let requested: NodeJS.Signals | undefined;
  const close = (server: NonNullable<typeof app>) =>
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (requested !== undefined) return;
      requested = signal;
      logger.info({ signal }, "shutting down");
      const timer = setTimeout(() => {
        logger.error("shutdown timed out");
        process.exit(1);
      }, config.shutdownTimeoutMs);
      timer.unref();
      if (running !== undefined) void close(running);
    });
  }
  let listening = false;
  try {
    // OpenTelemetry tracing, when an OTLP endpoint is set: the SDK is loaded only then.
    const tracing =
      config.otelExporterOtlpEndpoint === undefined &&
      config.otelExporterOtlpTracesEndpoint === undefined
        ? undefined
        : (await import("./telemetry/tracing.js")).startTracing({
            base: config.otelExporterOtlpEndpoint,
            traces: config.otelExporterOtlpTracesEndpoint,
          });
    app = await buildApp(config, { logger, logTail, tracing });
    // Asked to stop already: nothing to serve.
    if (requested === undefined) {
      await app.listen({ port: config.port, host: config.host });
      listening = true;
    }
  } catch (err) {
    // A busy port, a data directory that cannot be used, Redis unreachable, …: one line that
    // names the setting, not a stack.
    const message = startupErrorMessage(err, config);
    if (message === undefined) throw err;
    process.stderr.write(`switchboard-server: ${message}\n`);
    await app?.close().catch(() => {});
    process.exit(1);
  }
  if (listening) {
    logger.info(
      {
        port: config.port,
        host: config.host,
        store: config.store.kind,
        location: storeLocation(config.store),
        tls: config.tlsCert !== undefined,
      },
      "switchboard listening (gRPC, gRPC-Web and Connect on one port)",
    );
    // Said once the server serves: a start-up that fails (a busy port, a bad DATA_DIR) says only
    // why it failed.
    if (config.authJwtSecret === undefined && config.authJwksFile === undefined) {
      logger.warn(
        "authentication is off: set AUTH_JWT_SECRET or AUTH_JWKS_FILE; anyone can connect and speak as any user",
      );
    }
  }
  running = app;
  if (requested !== undefined) void close(running);
}

/**
 * WORKERS>1 on SQLite: opens (creates, upgrades) the database once, in the primary, before the
 * workers do, and serves them (store/sqlite/coordinator.ts). A database that cannot be used
 * stops the server here with one line, rather than every worker in turn.
 */
async function startCoordinator(dataDir: string): Promise<void> {
  const { startSqliteCoordinator } = await import("./store/sqlite/coordinator.js");
  const { startupErrorMessage } = await import("./startup-error.js");
  try {
    startSqliteCoordinator(dataDir);
  } catch (err) {
    const message = startupErrorMessage(err, config);
    if (message === undefined) throw err;
    process.stderr.write(`switchboard-server: ${message}\n`);
    process.exit(1);
  }
}

/**
 * WORKERS>1: every worker listens through the primary's one socket, so a port that cannot be
 * used would fail each worker in turn (and the primary would restart them). Try it once here
 * and say so in one line instead.
 */
async function checkPortOnce(): Promise<void> {
  const { createServer } = await import("node:net");
  const { startupErrorMessage } = await import("./startup-error.js");
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen(config.port, config.host, resolve);
    });
  } catch (err) {
    const message = startupErrorMessage(err, config);
    if (message === undefined) throw err;
    process.stderr.write(`switchboard-server: ${message}\n`);
    process.exit(1);
  }
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}
