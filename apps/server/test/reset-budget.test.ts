// The rapid-reset budget of one HTTP/2 connection: a token bucket, on a clock of our own.
import { describe, expect, it } from "vitest";
import { ResetBudget } from "../src/edge/transport/reset-budget.js";

describe("ResetBudget", () => {
  it("allows a burst, refuses the next reset, and refills at its rate", () => {
    let now = 0;
    const budget = new ResetBudget(5, 10, () => now);
    for (let i = 0; i < 5; i++) expect(budget.take()).toBe(true);
    expect(budget.take()).toBe(false);
    now += 100; // 10/s: one more after 100 ms
    expect(budget.take()).toBe(true);
    expect(budget.take()).toBe(false);
  });

  it("never holds more than its burst, however long the connection was quiet", () => {
    let now = 0;
    const budget = new ResetBudget(3, 10, () => now);
    now += 60_000;
    for (let i = 0; i < 3; i++) expect(budget.take()).toBe(true);
    expect(budget.take()).toBe(false);
  });

  it("with a rate of 0, allows the burst once per connection", () => {
    let now = 0;
    const budget = new ResetBudget(2, 0, () => now);
    expect(budget.take()).toBe(true);
    expect(budget.take()).toBe(true);
    now += 3_600_000;
    expect(budget.take()).toBe(false);
  });
});
