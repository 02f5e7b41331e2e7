// A benchmark that flatters one server is a bug: the report checks that every server of a
// comparison got the same load (connections, generator threads, step length and step schedule)
// and says so in RESULTS.md when one did not.
import type { FanoutRun } from "../lib/results.js";

/** What a fan-out run's load was: the same for every server it is compared with. */
function loadOf(run: FanoutRun): string | undefined {
  if (run.connections === undefined) return undefined; // results.json before issue 19
  return JSON.stringify({
    connections: run.connections,
    generatorThreads: run.generatorThreads,
    stepMs: run.stepMs,
    schedule: run.schedule,
  });
}

/**
 * The differences in load between the runs of one comparison (same subscriber count): one line
 * per load that not every server got, naming the servers; empty when all got the same.
 */
export function loadDifferences(runs: FanoutRun[]): string[] {
  const byCount = new Map<number, FanoutRun[]>();
  for (const r of runs) byCount.set(r.subscribers, [...(byCount.get(r.subscribers) ?? []), r]);
  const lines: string[] = [];
  for (const [count, group] of byCount) {
    const loads = new Map<string, Set<string>>();
    for (const r of group) {
      const load = loadOf(r);
      if (load === undefined) continue;
      loads.set(load, (loads.get(load) ?? new Set()).add(`${r.server} rep ${r.repetition}`));
    }
    if (loads.size <= 1) continue;
    for (const [load, who] of loads)
      lines.push(
        `${count.toLocaleString("en-US")} subscribers: ${load} for ${[...who].join(", ")}`,
      );
  }
  return lines;
}

/** The load every run of a comparison got, in words (when they all got the same). */
export function describeLoad(runs: FanoutRun[]): string | undefined {
  const first = runs.find((r) => r.connections !== undefined);
  if (first === undefined || loadDifferences(runs).length > 0) return undefined;
  const threads = first.generatorThreads ?? 0;
  return (
    `Every server got the same load: ${first.connections} HTTP/2 connection(s), the generator's subscribers read ` +
    `${threads === 0 ? "on the publisher's own thread" : `by ${threads} worker thread(s)`}, ` +
    `${((first.stepMs ?? 0) / 1000).toFixed(1)} s steps at ${(first.schedule ?? []).join(", ")} messages/s until one is not sustained.`
  );
}
