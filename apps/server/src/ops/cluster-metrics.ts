import cluster from "node:cluster";
import { randomUUID } from "node:crypto";
import { AggregatorRegistry, type Registry } from "prom-client";

const REQUEST = "switchboard:cluster-metrics-request";
const REPLY = "switchboard:cluster-metrics-reply";
/** How long a worker waits for the primary's aggregate before serving its own metrics, ms. */
const TIMEOUT_MS = 6_000;

interface Reply {
  type: typeof REPLY;
  id: string;
  text?: string;
  error?: string;
}

/**
 * In the primary of WORKERS=N: answers a worker's request for the metrics of the whole server,
 * every worker's registry summed by prom-client's AggregatorRegistry. A scrape of /metrics lands
 * on whichever worker the primary hands the connection to; without this it would see one worker.
 */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on("message", (worker, message: { type?: unknown; id?: unknown }) => {
    if (message?.type !== REQUEST || typeof message.id !== "string") return;
    const id = message.id;
    // A worker that died meanwhile cannot be answered: the callback takes the failed write
    // (EPIPE), which would otherwise be emitted on the worker and crash the primary.
    const ignore = () => {};
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: REPLY, id, text } satisfies Reply, ignore),
      (err: unknown) =>
        worker.send({ type: REPLY, id, error: String(err) } satisfies Reply, ignore),
    );
  });
}

/**
 * In a worker: offers `registry` to the primary's aggregation and returns the scrape function
 * /metrics uses, the whole server's metrics (falling back to this worker's own when the primary
 * does not answer). Outside a cluster: the registry's own metrics.
 */
export function clusterScrape(registry: Registry): () => Promise<string> {
  if (!cluster.isWorker) return () => registry.metrics();
  // Constructing one adds prom-client's worker-side listener; setRegistries says what to report.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  const pending = new Map<string, (reply: Reply) => void>();
  process.on("message", (message: Partial<Reply>) => {
    if (message?.type !== REPLY || typeof message.id !== "string") return;
    pending.get(message.id)?.(message as Reply);
  });
  return () =>
    new Promise<string>((resolve) => {
      const id = randomUUID();
      const fallback = () => {
        pending.delete(id);
        registry.metrics().then(resolve, () => resolve(""));
      };
      const timer = setTimeout(fallback, TIMEOUT_MS);
      pending.set(id, (reply) => {
        clearTimeout(timer);
        pending.delete(id);
        if (reply.text !== undefined) resolve(reply.text);
        else fallback();
      });
      process.send?.({ type: REQUEST, id });
    });
}
