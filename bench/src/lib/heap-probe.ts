// Preloaded into a server under measurement only (`node --expose-gc --import …/heap-probe.ts`),
// never part of the server itself: on SIGUSR2 it records process.memoryUsage(), forces two full
// garbage collections, records it again, and writes a heap snapshot, all into HEAP_PROBE_DIR
// (probe-N.json and probe-N.heapsnapshot; HEAP_PROBE_SNAPSHOT=0: no snapshot, whose making
// itself costs native memory). The server has no such hook or endpoint of its own.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeHeapSnapshot } from "node:v8";

const dir = process.env.HEAP_PROBE_DIR;
const gc = (globalThis as { gc?: () => void }).gc;
if (dir !== undefined && gc !== undefined) {
  let n = 0;
  process.on("SIGUSR2", () => {
    const index = n++;
    const before = process.memoryUsage();
    gc();
    gc();
    const after = process.memoryUsage();
    const snapshot =
      process.env.HEAP_PROBE_SNAPSHOT === "0"
        ? undefined
        : writeHeapSnapshot(join(dir, `probe-${index}.heapsnapshot`));
    writeFileSync(join(dir, `probe-${index}.json`), JSON.stringify({ before, after, snapshot }));
  });
}
