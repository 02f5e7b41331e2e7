// Whether a server's /metrics answers while it is under load, and how fast: a worker thread
// scrapes it every `intervalMs`, one scrape at a time, on an event loop of its own (the runner's
// may be busy reading the load's answers).
import { Worker } from "node:worker_threads";

/** One scrape: when it was asked (ms from the start) and how long it took, ms. */
export interface Scrape {
  atMs: number;
  ms: number;
  /** Answered with 200 (else failed, or still unanswered when the watch stopped). */
  ok: boolean;
  /** Still unanswered when the watch stopped: `ms` is how long it had waited. */
  pending?: boolean;
}

/** What {@link MetricsWatch.stop} returns. */
export interface MetricsWatchResult {
  scrapes: Scrape[];
  /** The longest a scrape took, or had waited when the watch stopped, ms. */
  maxMs: number;
  /** Median scrape time, ms. */
  p50Ms: number;
  /** Scrapes answered with 200. */
  answered: number;
}

const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { url, intervalMs } = workerData;
const t0 = performance.now();
let stopped = false;
let current;
parentPort.on("message", () => {
  stopped = true;
  if (current !== undefined) {
    parentPort.postMessage({ atMs: current - t0, ms: performance.now() - current, ok: false, pending: true });
  }
  parentPort.postMessage("done");
});
(async () => {
  while (!stopped) {
    current = performance.now();
    let ok = false;
    try {
      const res = await fetch(url + "/metrics", { signal: AbortSignal.timeout(600000) });
      await res.text();
      ok = res.ok;
    } catch {}
    if (stopped) return;
    parentPort.postMessage({ atMs: current - t0, ms: performance.now() - current, ok });
    current = undefined;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
})();
`;

/** Scrapes `url`/metrics every `intervalMs` until {@link stop}. */
export class MetricsWatch {
  private readonly scrapes: Scrape[] = [];
  private readonly worker: Worker;
  private readonly done: Promise<void>;

  constructor(url: string, intervalMs = 500) {
    this.worker = new Worker(WORKER, { eval: true, workerData: { url, intervalMs } });
    this.done = new Promise((resolve) => {
      this.worker.on("message", (m: Scrape | "done") => {
        if (m === "done") resolve();
        else this.scrapes.push(m);
      });
      this.worker.on("error", () => resolve());
      this.worker.on("exit", () => resolve());
    });
  }

  private stopped: Promise<MetricsWatchResult> | undefined;

  /** Stops scraping (once; later calls return the same); a scrape still waiting counts too. */
  stop(): Promise<MetricsWatchResult> {
    this.stopped ??= this.finish();
    return this.stopped;
  }

  private async finish(): Promise<MetricsWatchResult> {
    this.worker.postMessage("stop");
    await this.done;
    await this.worker.terminate();
    const times = this.scrapes.map((s) => s.ms).sort((a, b) => a - b);
    return {
      scrapes: this.scrapes,
      maxMs: times.at(-1) ?? Number.NaN,
      p50Ms: times[Math.floor(times.length / 2)] ?? Number.NaN,
      answered: this.scrapes.filter((s) => s.ok).length,
    };
  }
}

/** `switchboard_connections_closed_total` by reason, from a /metrics text. */
export function closedByReason(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(
    /^switchboard_connections_closed_total\{reason="([^"]+)"\} (\S+)$/gm,
  )) {
    out[m[1] as string] = Number(m[2]);
  }
  return out;
}
