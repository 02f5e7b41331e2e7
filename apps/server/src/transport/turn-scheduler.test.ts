// TurnScheduler: deferred work in fair, bounded slices per event-loop turn.
import { setImmediate as turn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { TurnScheduler } from "./turn-scheduler.js";

/** Blocks the event loop for `ms`. */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

describe("TurnScheduler", () => {
  it("runs each key's tasks in order, one key after another in turn", async () => {
    const scheduler = new TurnScheduler(1_000, 0);
    const ran: string[] = [];
    const a = {};
    const b = {};
    for (let i = 0; i < 3; i++) scheduler.defer(a, () => ran.push(`a${i}`));
    scheduler.defer(b, () => ran.push("b0"));
    expect(ran).toEqual([]);
    await turn();
    expect(ran).toEqual(["a0", "b0", "a1", "a2"]);
    expect(scheduler.pending).toBe(0);
  });

  it("runs a key's tasks together up to its quantum, then the next key's", async () => {
    const scheduler = new TurnScheduler(1_000, 10);
    const ran: string[] = [];
    const a = {};
    const b = {};
    for (let i = 0; i < 4; i++) {
      scheduler.defer(a, () => {
        block(7);
        ran.push(`a${i}`);
      });
    }
    scheduler.defer(b, () => ran.push("b0"));
    await turn();
    // 7 ms each in a 10 ms quantum: two of a's (the second overruns it), b's, then a's others
    // (one of a's when the machine takes the core away meanwhile: the quantum is wall-clock time).
    expect(ran.filter((t) => t !== "b0")).toEqual(["a0", "a1", "a2", "a3"]);
    expect(ran.indexOf("b0")).toBeGreaterThanOrEqual(1);
    expect(ran.indexOf("b0")).toBeLessThanOrEqual(2);
  });

  it("stops a turn once its budget is spent and goes on after the loop has polled", async () => {
    const scheduler = new TurnScheduler(20, 0);
    let ran = 0;
    for (let i = 0; i < 10; i++) {
      scheduler.defer({}, () => {
        block(8);
        ran++;
      });
    }
    await turn();
    // 8 ms each in a 20 ms budget: three in the first turn (the third overruns it); fewer when
    // the machine takes the core away meanwhile (the budget is wall-clock time).
    expect(ran).toBeGreaterThanOrEqual(1);
    expect(ran).toBeLessThanOrEqual(3);
    expect(scheduler.pending).toBe(10 - ran);
    // A timer due meanwhile runs between two turns of the work.
    let timerRanAt = -1;
    setTimeout(() => {
      timerRanAt = ran;
    }, 0);
    while (scheduler.pending > 0) await turn();
    expect(ran).toBe(10);
    expect(timerRanAt).toBeGreaterThanOrEqual(1);
    expect(timerRanAt).toBeLessThan(10);
  });

  it("counts the work a task goes on with in promise continuations in its turn's budget", async () => {
    const scheduler = new TurnScheduler(20, 0);
    let continued = 0;
    for (let i = 0; i < 10; i++) {
      // As a request's handler does: little at once, the rest after an await.
      scheduler.defer({}, () => {
        void Promise.resolve().then(() => {
          block(8);
          continued++;
        });
      });
    }
    await turn();
    expect(continued).toBeGreaterThanOrEqual(1);
    expect(continued).toBeLessThanOrEqual(4);
    expect(scheduler.pending).toBeGreaterThan(0);
    while (scheduler.pending > 0) await turn();
    await turn();
    expect(continued).toBe(10);
  });

  it("runs one start per turn, after the turn's other tasks, with the work it queued on the next tick", async () => {
    const scheduler = new TurnScheduler(1_000, 0);
    const ran: string[] = [];
    const conn = {};
    for (let i = 0; i < 3; i++) {
      scheduler.start(() => {
        ran.push(`start${i}`);
        // As node:http2 does with a new session's frames: parsed on the next tick.
        process.nextTick(() => {
          ran.push(`parsed${i}`);
          scheduler.defer(conn, () => ran.push(`request${i}`));
        });
      });
    }
    await turn();
    expect(ran).toEqual(["start0", "parsed0"]);
    await turn();
    // Started connections' requests go first, then the next start.
    expect(ran).toEqual(["start0", "parsed0", "request0", "start1", "parsed1"]);
    while (scheduler.pending > 0) await turn();
    expect(ran.slice(5)).toEqual(["request1", "start2", "parsed2", "request2"]);
  });

  it("serves a key that arrives behind a long queue within one round", async () => {
    const scheduler = new TurnScheduler(1_000, 0);
    const ran: string[] = [];
    const busy = {};
    for (let i = 0; i < 100; i++) scheduler.defer(busy, () => ran.push("busy"));
    scheduler.defer({}, () => ran.push("late"));
    await turn();
    expect(ran.indexOf("late")).toBe(1);
  });

  it("keeps going after a task throws", async () => {
    const scheduler = new TurnScheduler(1_000);
    const ran: number[] = [];
    const errors: unknown[] = [];
    const onError = (err: unknown) => errors.push(err);
    process.on("uncaughtException", onError);
    try {
      scheduler.defer({}, () => {
        throw new Error("boom");
      });
      scheduler.defer({}, () => ran.push(1));
      await turn();
      await turn();
      expect(ran).toEqual([1]);
    } finally {
      process.off("uncaughtException", onError);
    }
  });
});
