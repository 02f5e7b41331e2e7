// Runs in a worker thread (fanout-threads.test.ts): answers with this thread's monotonicMs().
import { parentPort } from "node:worker_threads";
import { monotonicMs } from "../src/lib/clock.js";

parentPort?.postMessage(monotonicMs());
