import { describe, expect, it } from "vitest";
import { BoundedQueue } from "./bounded-queue.js";
import { SlowSubscriberError } from "./errors.js";

async function take<T>(iterator: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) {
    const r = await iterator.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

describe("BoundedQueue", () => {
  it("hands items to a waiting consumer in order", async () => {
    const queue = new BoundedQueue<number>(10);
    const it = queue[Symbol.asyncIterator]();
    const pending = take(it, 3);
    queue.push(1);
    queue.push(2);
    queue.push(3);
    expect(await pending).toEqual([1, 2, 3]);
  });

  it("ends cleanly after the queued items when closed", async () => {
    const queue = new BoundedQueue<number>(10);
    queue.push(1);
    queue.end();
    queue.push(2);
    const seen: number[] = [];
    for await (const n of queue) seen.push(n);
    expect(seen).toEqual([1]);
  });

  it("overflows instead of dropping: the push that exceeds the limit ends the queue", async () => {
    const queue = new BoundedQueue<number>(3);
    expect([queue.push(1), queue.push(2), queue.push(3)]).toEqual([true, true, true]);
    expect(queue.push(4)).toBe(false);
    expect(queue.isEnded).toBe(true);
    expect(queue.backlog).toBe(0);
    const it = queue[Symbol.asyncIterator]();
    await expect(it.next()).rejects.toBeInstanceOf(SlowSubscriberError);
  });

  it("counts only unread items against the limit", async () => {
    const queue = new BoundedQueue<number>(2);
    const it = queue[Symbol.asyncIterator]();
    for (let i = 0; i < 3000; i++) {
      expect(queue.push(i)).toBe(true);
      expect((await it.next()).value).toBe(i);
    }
    expect(queue.backlog).toBe(0);
  });

  it("throws the error it was ended with, without delivering what was queued", async () => {
    const queue = new BoundedQueue<number>(5);
    queue.push(1);
    queue.end(new Error("deadline"));
    await expect(queue[Symbol.asyncIterator]().next()).rejects.toThrow("deadline");
  });

  it("poll reads without waiting: a batch, undefined while empty, null once closed and empty", () => {
    const queue = new BoundedQueue<number>(10);
    expect(queue.poll()).toBeUndefined();
    queue.push(1);
    queue.push(2);
    queue.push(3);
    expect(queue.poll(2)).toEqual([1, 2]);
    expect(queue.backlog).toBe(1);
    queue.end();
    expect(queue.poll()).toEqual([3]);
    expect(queue.poll()).toBeNull();
  });

  it("poll throws the error the queue ended with (an overflow too)", () => {
    const queue = new BoundedQueue<number>(1);
    queue.push(1);
    expect(queue.push(2)).toBe(false);
    expect(() => queue.poll()).toThrow(SlowSubscriberError);
  });

  it("onReady calls back once, synchronously, at the next push or end; at once if one is due", () => {
    const queue = new BoundedQueue<number>(10);
    const calls: string[] = [];
    queue.onReady(() => calls.push(`ready, backlog ${queue.backlog}`));
    expect(calls).toEqual([]);
    queue.push(1);
    queue.push(2);
    // Once: the second push finds no callback.
    expect(calls).toEqual(["ready, backlog 1"]);
    queue.onReady(() => calls.push("already queued"));
    expect(calls).toEqual(["ready, backlog 1", "already queued"]);
    expect(queue.poll()).toEqual([1, 2]);
    queue.onReady(() => calls.push(`ended: ${queue.isEnded}`));
    queue.end(new Error("deadline"));
    expect(calls.at(-1)).toBe("ended: true");
    expect(() => queue.poll()).toThrow("deadline");
  });
});
