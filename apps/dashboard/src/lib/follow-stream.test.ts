import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { followStream, serverBack } from "./follow-stream.ts";

describe("followStream", () => {
  it("opens again at once when the server is back, not after the rest of its backoff", async () => {
    const abort = new AbortController();
    const opened: number[] = [];
    const started = performance.now();
    const done = followStream(
      async function* (_signal, attempt) {
        opened.push(Math.round(performance.now() - started));
        if (attempt === 0) throw new ConnectError("connection refused", Code.Unavailable);
        yield "live";
        await new Promise<void>((resolve) =>
          abort.signal.addEventListener("abort", () => resolve()),
        );
      },
      () => {},
      // A first retry 10 s away: only the "server back" event can open it within the test.
      { signal: abort.signal, backoff: { initialMs: 10_000, maxMs: 10_000, jitter: 0 } },
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(opened).toHaveLength(1);
    serverBack.dispatchEvent(new Event("online"));
    await expect.poll(() => opened.length, { timeout: 1_000 }).toBe(2);
    expect(opened[1]).toBeLessThan(2_000);
    abort.abort();
    await done;
  });
});
