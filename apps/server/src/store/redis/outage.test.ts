import { describe, expect, it } from "vitest";
import { type OutageEvent, OutageTracker } from "./outage.js";

describe("OutageTracker", () => {
  it("reports an outage once when it starts and once when it ends, counting what came between", () => {
    let now = 1_000;
    const events: OutageEvent[] = [];
    const errors: string[] = [];
    const tracker = new OutageTracker(
      (_err, context) => errors.push(context),
      (e) => events.push(e),
      () => now,
    );
    tracker.error(new Error("failed sweep"), "presence sweep");
    expect(errors).toEqual(["presence sweep"]);

    tracker.error(new Error("Socket closed unexpectedly"), "redis connection");
    for (let i = 0; i < 5; i++)
      tracker.error(new Error("connect ECONNREFUSED"), "redis connection");
    tracker.error(new Error("redis unavailable"), "stream slot release");
    now += 4_200;
    tracker.ready();
    tracker.ready();
    expect(events).toEqual([
      { state: "down", reason: "Socket closed unexpectedly", context: "redis connection" },
      { state: "up", durationMs: 4_200, failures: 6 },
    ]);
    expect(errors).toEqual(["presence sweep"]);

    // After it: errors are reported again, and a new outage is a new pair.
    tracker.error(new Error("failed trim"), "history trim");
    tracker.error(new Error("connect ECONNREFUSED"), "redis feed connection");
    expect(errors).toEqual(["presence sweep", "history trim"]);
    expect(events.at(-1)).toMatchObject({ state: "down", context: "redis feed connection" });
    tracker.stop();
  });

  it("ends an outage the client outlived (a subscriber connection that dropped alone)", () => {
    const events: OutageEvent[] = [];
    const tracker = new OutageTracker(
      () => {},
      (e) => events.push(e),
    );
    let ready = false;
    tracker.isReady = () => ready;
    tracker.error(new Error("Socket closed unexpectedly"), "redis feed connection");
    tracker.error(new Error("x"), "node heartbeat");
    ready = true;
    tracker.error(new Error("failed release"), "stream slot release");
    expect(events.map((e) => e.state)).toEqual(["down", "up"]);
    tracker.stop();
  });
});
