import { describe, expect, it } from "vitest";
import { LocalLimitCounter, TokenBucket } from "./limits.js";

describe("TokenBucket", () => {
  it("lets a burst through, then one token per 1/rate seconds, and says how long to wait", () => {
    const bucket = new TokenBucket(2, 3, 0);
    expect([bucket.take(0), bucket.take(0), bucket.take(0)]).toEqual([0, 0, 0]);
    expect(bucket.take(0)).toBe(500);
    expect(bucket.take(250)).toBe(250);
    expect(bucket.take(500)).toBe(0);
    expect(bucket.full(500)).toBe(false);
    expect(bucket.full(2_000)).toBe(true);
  });
});

describe("LocalLimitCounter", () => {
  it("counts each identity's open streams; a slot released twice frees one place", async () => {
    const counter = new LocalLimitCounter();
    const a = await counter.acquireStream("alice", 2);
    const b = await counter.acquireStream("alice", 2);
    expect(a && b).toBeDefined();
    expect(await counter.acquireStream("alice", 2)).toBeUndefined();
    expect(await counter.acquireStream("bob", 2)).toBeDefined();
    a?.release();
    a?.release();
    expect(await counter.acquireStream("alice", 2)).toBeDefined();
    expect(await counter.acquireStream("alice", 2)).toBeUndefined();
  });
});
