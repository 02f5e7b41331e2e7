import cluster from "node:cluster";
import { buildApp } from "./app.js";
import { runPrimary } from "./cluster.js";
import { ConfigError, createConfigCommand, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { serveClusterMetrics } from "./ops/cluster-metrics.js";

// The process entry: configuration, logger, listen, signals. Everything else is in app.ts.
const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  process.stdout.write(createConfigCommand().helpInformation());
  process.exit(0);
}

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(argv);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`switchboard-server: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

if (config.workers > 1 && cluster.isPrimary) {
  runPrimary(config, createLogger(config).logger);
  // /metrics on any worker reports every worker (ops/cluster-metrics.ts).
  serveClusterMetrics();
} else {
  if (cluster.isWorker) config.instanceId += `#${cluster.worker?.id}`;
  await startServer();
}

async function startServer(): Promise<void> {
  const { logger, logTail } = createLogger(config);
  const app = await buildApp(config, { logger, logTail });
  await app.listen({ port: config.port, host: config.host });
  logger.info(
    {
      port: config.port,
      host: config.host,
      store: config.store,
      tls: config.tlsCert !== undefined,
    },
    "switchboard listening (gRPC, gRPC-Web and Connect on one port)",
  );

  let closing = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (closing) return;
      closing = true;
      logger.info({ signal }, "shutting down");
      const timer = setTimeout(() => {
        logger.error("shutdown timed out");
        process.exit(1);
      }, config.shutdownTimeoutMs);
      timer.unref();
      app.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
    });
  }
}
