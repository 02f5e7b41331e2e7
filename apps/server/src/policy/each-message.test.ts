import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { eachMessage, SKIP } from "./each-message.js";

/** A source that records how it was closed. */
function source(items: number[], failAfter?: Error) {
  const log: string[] = [];
  async function* gen() {
    try {
      for (const item of items) yield item;
      if (failAfter !== undefined) throw failAfter;
    } finally {
      log.push("closed");
    }
  }
  return { stream: gen(), log };
}

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

describe("eachMessage", () => {
  it("maps every message with its index, skips SKIP, and reports the end once", async () => {
    const { stream, log } = source([1, 2, 3, 4]);
    const ends: unknown[] = [];
    const out = eachMessage(stream, {
      each: (n, i) => (n % 2 === 0 ? SKIP : `${i}:${n}`),
      end: (e) => ends.push(e),
    });
    expect(await collect(out)).toEqual(["0:1", "2:3"]);
    expect(ends).toEqual([undefined]);
    expect(log).toEqual(["closed"]);
  });

  it("maps the source's error, and reports that error as the end", async () => {
    const { stream } = source([1], new Error("boom"));
    const ends: unknown[] = [];
    const out = eachMessage(stream, {
      error: (err) => new ConnectError((err as Error).message, Code.InvalidArgument),
      end: (e) => ends.push(e),
    });
    const err = await collect(out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect(ends).toEqual([err]);
  });

  it("ends with what `each` throws and closes the source, as a for-await loop does", async () => {
    const { stream, log } = source([1, 2, 3]);
    const seen: number[] = [];
    const ends: unknown[] = [];
    const out = eachMessage(stream, {
      each: (n) => {
        if (n === 2) throw new ConnectError("no 2", Code.ResourceExhausted);
        seen.push(n);
        return n;
      },
      end: (e) => ends.push(e),
    });
    const it = out[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ done: false, value: 1 });
    await expect(it.next()).rejects.toThrow("no 2");
    expect(log).toEqual(["closed"]);
    expect(seen).toEqual([1]);
    expect(ends).toHaveLength(1);
    expect(await it.next()).toEqual({ done: true, value: undefined });
  });

  it("passes return() to the source and reports Canceled: the consumer went away", async () => {
    const { stream, log } = source([1, 2, 3]);
    const ends: unknown[] = [];
    const it = eachMessage(stream, { end: (e) => ends.push(e) })[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ done: false, value: 1 });
    await it.return?.();
    expect(log).toEqual(["closed"]);
    expect(ends).toHaveLength(1);
    expect((ends[0] as ConnectError).code).toBe(Code.Canceled);
    expect(await it.next()).toEqual({ done: true, value: undefined });
  });
  it("awaits an asynchronous `each` in order; its rejection ends the stream and closes the source", async () => {
    const { stream, log } = source([1, 2, 3]);
    const ends: unknown[] = [];
    const out = eachMessage(stream, {
      each: async (n) => {
        await new Promise((r) => setTimeout(r, 5 - n));
        if (n === 3) throw new ConnectError("no 3", Code.ResourceExhausted);
        return n === 2 ? SKIP : n * 10;
      },
      end: (e) => ends.push(e),
    });
    const seen: number[] = [];
    const err = await (async () => {
      for await (const n of out) seen.push(n);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([10]);
    expect((err as ConnectError).rawMessage).toBe("no 3");
    expect(ends).toEqual([err]);
    expect(log).toEqual(["closed"]);
  });
});
