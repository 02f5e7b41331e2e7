// The harness measures what it claims: every delivery to every subscriber is counted and timed,
// a missed message shows, a failed step is not retried unless asked and every try is kept, and
// the server's CPU time, loop delay and GC come back from the preloaded probe.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publisher, runSteps, SubscriberSet } from "../src/lib/fanout-load.js";
import {
  parseOwnMetrics,
  type RunningServer,
  seedGoUnavailable,
  startServer,
} from "../src/lib/servers.js";

describe("fan-out load against the plain grpc-js peer", () => {
  let server: RunningServer;
  let subs: SubscriberSet;
  beforeAll(async () => {
    server = await startServer("plain-grpc-js");
    subs = new SubscriberSet(server.url, {
      // More than the 50 subscribers the issue-6 harness timed: all of them must be timed now.
      subscribers: 60,
      connections: 3,
      room: "test",
      oneUser: true,
    });
    await subs.settle();
  });
  afterAll(async () => {
    subs?.close();
    await server?.stop();
  });

  it("times every delivery to every subscriber and reads the server's figures", async () => {
    const publisher = new Publisher(server.url, "test");
    const [step, ...more] = await runSteps(subs, publisher, {
      deliveryRates: [20 * 60],
      stepMs: 1000,
      server,
    });
    publisher.close();
    expect(more).toHaveLength(0);
    expect(step?.sent).toBe(20);
    expect(step?.delivered).toBe(20 * 60);
    expect(subs.latency.count).toBe(20 * 60);
    expect(step?.subscribersMissing).toBe(0);
    expect(step?.attempt).toBe(1);
    expect(step?.max).toBeGreaterThanOrEqual(step?.p99 ?? Number.POSITIVE_INFINITY);
    expect(step?.p99).toBeGreaterThanOrEqual(step?.p50 ?? Number.POSITIVE_INFINITY);
    // The probe answered: loop delay sampled, GC counted (possibly zero), CPU time read.
    expect(step?.loopMaxMs).toBeGreaterThan(0);
    expect(step?.gcCount).toBeGreaterThanOrEqual(0);
    expect(step?.serverCpuSeconds).toBeGreaterThan(0);
    expect(step?.usPerDelivery).toBeGreaterThan(0);
  });

  it("records a failed step once without --tries, and every try with it", async () => {
    // Published to another room: nothing reaches the subscribers, so no step can be sustained.
    const elsewhere = new Publisher(server.url, "elsewhere");
    const steps = { deliveryRates: [600, 1200], stepMs: 300, drainMs: 300 };
    const once = await runSteps(subs, elsewhere, steps);
    expect(once.map((s) => [s.attempt, s.sustained])).toEqual([[1, false]]);
    expect(once[0]?.subscribersMissing).toBe(60);
    const twice = await runSteps(subs, elsewhere, { ...steps, tries: 2 });
    expect(twice.map((s) => [s.rate, s.attempt, s.sustained])).toEqual([
      [10, 1, false],
      [10, 2, false],
    ]);
    elsewhere.close();
  });
});

describe("server settings and metrics", () => {
  it("leaves seed-go out when SEED_GO_BIN is unset or not executable", () => {
    const saved = process.env.SEED_GO_BIN;
    delete process.env.SEED_GO_BIN;
    try {
      expect(seedGoUnavailable({})).toMatch(/not set/);
      expect(seedGoUnavailable({ seedServer: "/nonexistent/seed-server" })).toMatch(
        /not an executable/,
      );
      expect(seedGoUnavailable({ seedServer: process.execPath })).toBeUndefined();
    } finally {
      if (saved !== undefined) process.env.SEED_GO_BIN = saved;
    }
  });

  it("reads prom-client's loop lag and GC sums from a /metrics text", () => {
    const text = [
      "nodejs_eventloop_lag_max_seconds 0.0625",
      'nodejs_gc_duration_seconds_sum{kind="minor"} 0.5',
      'nodejs_gc_duration_seconds_sum{kind="major"} 0.25',
      'nodejs_gc_duration_seconds_count{kind="minor"} 10',
      'nodejs_gc_duration_seconds_count{kind="major"} 2',
    ].join("\n");
    expect(parseOwnMetrics(text)).toEqual({ loopMaxMs: 62.5, gcMs: 750, gcCount: 12 });
    expect(parseOwnMetrics("process_cpu_seconds_total 1")).toBeUndefined();
  });
});
