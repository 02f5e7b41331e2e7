import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import type { Config } from "./config.js";

/** Restarts of crashed workers allowed per minute before the primary gives up and exits 1. */
const MAX_RESTARTS_PER_MINUTE = 10;

/**
 * The primary of WORKERS=N: forks N server processes that share the one port (node:cluster; the
 * primary accepts connections and hands them out round-robin), replaces a worker that dies,
 * and on SIGTERM/SIGINT asks every worker to shut down gracefully, then exits 0 when all have
 * (1 after SHUTDOWN_TIMEOUT_MS). Workers share rooms through the configured store: the SQLite
 * file, with this primary passing change-feed wake-ups and counting presence and limits for
 * them (store/sqlite/coordinator.ts, started by server.ts), or Redis.
 */
export function runPrimary(
  config: Pick<Config, "workers" | "shutdownTimeoutMs">,
  logger: Logger,
): void {
  let stopping = false;
  const restarts: number[] = [];
  // The workers alive, by our own account: node:cluster drops a worker from `cluster.workers`
  // at its 'exit' only if its IPC channel is already closed, else later at 'disconnect', so a
  // last worker whose exit came first would leave the primary waiting for its timeout.
  const alive = new Set<Worker>();
  const fork = (): Worker => {
    const worker = cluster.fork();
    alive.add(worker);
    return worker;
  };

  cluster.on("exit", (worker, code, signal) => {
    alive.delete(worker);
    if (stopping) {
      if (alive.size === 0) {
        logger.info("all workers stopped");
        process.exit(0);
      }
      return;
    }
    const now = Date.now();
    restarts.push(now);
    while ((restarts[0] as number) < now - 60_000) restarts.shift();
    if (restarts.length > MAX_RESTARTS_PER_MINUTE) {
      logger.fatal({ restarts: restarts.length }, "workers keep dying; giving up");
      process.exit(1);
    }
    logger.error(
      { worker: worker.id, pid: worker.process.pid, code, signal },
      "worker died; starting another",
    );
    fork();
  });

  let listening = 0;
  cluster.on("listening", () => {
    listening++;
    if (listening === config.workers)
      logger.info({ workers: config.workers }, "all workers listening");
  });

  for (let i = 0; i < config.workers; i++) fork();

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "stopping workers");
      for (const worker of alive) worker.process.kill("SIGTERM");
      setTimeout(() => {
        logger.error("workers did not stop in time");
        process.exit(1);
      }, config.shutdownTimeoutMs + 1_000).unref();
    });
  }
}
