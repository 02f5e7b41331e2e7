// The entry of a worker thread that runs a TypeScript module: registers tsx's loader in this
// thread, then imports workerData.entry. (A worker does not get the hooks that `--import tsx`
// registered on the main thread in time for its entry module, and vitest's transform does not
// reach worker threads at all.)
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.entry);
