// The fan-out generator spread over worker threads measures what one thread measured: every
// delivery to every subscriber counted and timed on one clock, a missed message still shows (per
// subscriber, across the threads' slices of the counts), the generator's threads and CPU are
// reported with each step, and a thread that cannot do its work fails the run instead of hiding.
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { monotonicMs } from "../src/lib/clock.js";
import { generatorFigures, Publisher, runSteps } from "../src/lib/fanout-load.js";
import { ThreadedSubscribers } from "../src/lib/fanout-threads.js";
import { freePort, type RunningServer, startServer } from "../src/lib/servers.js";

describe("one clock for every thread", () => {
  it("a worker thread's monotonicMs() falls between two readings of the main thread's", async () => {
    const before = monotonicMs();
    const worker = new Worker(new URL("../src/lib/ts-worker.mjs", import.meta.url), {
      workerData: { entry: new URL("./clock-worker.ts", import.meta.url).href },
    });
    const theirs = await new Promise<number>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    const after = monotonicMs();
    await worker.terminate();
    expect(theirs).toBeGreaterThanOrEqual(before);
    expect(theirs).toBeLessThanOrEqual(after);
  });
});

describe("subscribers over worker threads, against the plain grpc-js peer", () => {
  let server: RunningServer;
  let subs: ThreadedSubscribers;
  beforeAll(async () => {
    server = await startServer("plain-grpc-js");
    // Two rooms, subscriber i in room i mod 2; 3 connections over 2 threads (2 + 1).
    subs = new ThreadedSubscribers(
      server.url,
      { subscribers: 60, connections: 3, room: "threads", rooms: 2, oneUser: true },
      2,
    );
    await subs.settle(20_000);
  });
  afterAll(async () => {
    await subs?.close();
    await server?.stop();
  });

  it("counts and times every delivery on every thread", async () => {
    expect(subs.threads).toBe(2);
    const both = new Publisher(server.url, ["threads-0", "threads-1"]);
    // 20 messages/s for 1 s, alternating rooms: every subscriber gets 10.
    const [step, ...more] = await runSteps(subs, both, {
      deliveryRates: [20 * 60],
      stepMs: 1000,
      // runSteps expects sent × subscribers, twice what two rooms get: no need to wait long.
      drainMs: 500,
      server,
    });
    both.close();
    expect(more).toHaveLength(0);
    expect(step?.sent).toBe(20);
    // runSteps' expectation is sent × subscribers; with two rooms half of that arrives.
    expect(step?.delivered).toBe(10 * 60);
    expect(subs.latency.count).toBe(10 * 60);
    expect(subs.missing(10)).toBe(0);
    expect(subs.missing(11)).toBe(60);
    // Latency on one clock: positive and well under the step (a wrong clock gives nonsense).
    expect(step?.p50).toBeGreaterThan(0);
    expect(step?.max).toBeLessThan(1000);
    expect(step?.generatorThreads).toBe(2);
    expect(step?.generatorCpuPercent).toBeGreaterThan(0);
    expect(step?.generatorMsPerMessage).toBeGreaterThan(0);
  });

  it("shows the subscribers that missed messages, whichever thread holds them", async () => {
    // Only room threads-0: the 30 subscribers of threads-1 (on both threads) get nothing.
    const one = new Publisher(server.url, "threads-0");
    const [step] = await runSteps(subs, one, {
      deliveryRates: [10 * 60],
      stepMs: 500,
      drainMs: 500,
    });
    one.close();
    expect(step?.sent).toBe(5);
    expect(step?.delivered).toBe(5 * 30);
    expect(step?.subscribersMissing).toBe(30);
    expect(step?.sustained).toBe(false);
    // The counts are per subscriber, in index order: the even ones (room threads-0) have all 5.
    expect([...subs.counts].filter((c, i) => (i % 2 === 0 ? c !== 5 : c !== 0))).toEqual([]);
  });
});

describe("the generator's own figures", () => {
  const cpu = (ms: number) => ({ user: ms * 1000, system: 0 });
  it("is the limit at 90% of its cores, or at 25 ms of CPU per message over its threads", () => {
    expect(generatorFigures(cpu(850), 1000, 100, 1, 1).generatorLimited).toBe(false);
    expect(generatorFigures(cpu(950), 1000, 100, 1, 1).generatorLimited).toBe(true);
    // Two threads on two cores: 150% of one core is not the limit.
    expect(generatorFigures(cpu(1500), 1000, 100, 2, 2).generatorLimited).toBe(false);
    // One message of 30 ms of generator CPU on one thread: the last delivery read 30 ms late.
    const burst = generatorFigures(cpu(30), 1000, 1, 1, 1);
    expect(burst.generatorMsPerMessage).toBe(30);
    expect(burst.generatorLimited).toBe(true);
    // The same over two threads on two cores: 15 ms each.
    expect(generatorFigures(cpu(30), 1000, 1, 2, 2).generatorMsPerMessage).toBe(15);
    // Two threads on one core run one at a time.
    expect(generatorFigures(cpu(30), 1000, 1, 2, 1).generatorMsPerMessage).toBe(30);
  });
});

describe("a generator that cannot do its work", () => {
  it("fails the run: nothing listens, no subscriber is welcomed", async () => {
    const port = await freePort();
    const set = new ThreadedSubscribers(
      `http://127.0.0.1:${port}`,
      { subscribers: 4, connections: 2, room: "nowhere", oneUser: true },
      2,
    );
    try {
      await expect(set.settle(1500)).rejects.toThrow(/only 0\/4 subscribed/);
    } finally {
      await set.close();
    }
  });
});
