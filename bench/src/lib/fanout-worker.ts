// One worker thread of ThreadedSubscribers (lib/fanout-threads.ts): a SubscriberSet over this
// worker's share of the connections, counting into the shared array and timing against the
// publisher's shared send times; answers the main thread's begin / end / close requests.
import { parentPort, workerData } from "node:worker_threads";
import { PublishTimes, SubscriberSet } from "./fanout-load.js";
import {
  STATUS_SLOTS,
  type WorkerAnswer,
  type WorkerInit,
  type WorkerRequest,
} from "./fanout-threads.js";

const init = workerData as WorkerInit;
const port = parentPort;
if (port === null) throw new Error("fanout-worker.ts runs in a worker thread");
const set = new SubscriberSet(
  init.url,
  init.options,
  new Uint32Array(init.counts, 4 * init.countsOffset, init.options.subscribers),
);
const status = new Float64Array(init.status, 8 * STATUS_SLOTS * init.index, STATUS_SLOTS);
// Progress for settle(), every 50 ms (a write per chunk would cost every delivery).
const publish = () => {
  status[0] = set.welcomed;
  status[1] = set.lastActivity;
  status[2] = set.allWelcomedAt;
};
publish();
const progress = setInterval(publish, 50);

port.on("message", (request: WorkerRequest) => {
  const answer: WorkerAnswer = { id: request.id };
  try {
    if (request.type === "begin") {
      set.beginStep({ times: new PublishTimes(request.times), seq: request.firstSeq });
    } else if (request.type === "end") {
      set.endStep();
      answer.latency = set.latency;
      answer.ended = [...set.ended];
    } else if (request.type === "close") {
      clearInterval(progress);
      set.close();
    }
  } catch (err) {
    answer.error = err instanceof Error ? err.message : String(err);
  }
  port.postMessage(answer);
});
