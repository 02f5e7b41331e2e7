import { describe, expect, it } from "vitest";
import { RpcMetrics } from "../ops/metrics.js";
import { Telemetry } from "./telemetry.js";

describe("the process's counters", () => {
  it("are one source: StreamMetrics' samples and /metrics read the same counts", async () => {
    const kept = { requests: 0, published: 0, delivered: 0, slow: 0, subscribers: 0 };
    const telemetry = new Telemetry({
      requests: () => kept.requests,
      published: () => kept.published,
      delivered: () => kept.delivered,
      slowConsumerDisconnects: () => kept.slow,
      subscribers: () => kept.subscribers,
    });
    const metrics = new RpcMetrics();
    metrics.observeDomain(telemetry.counters);
    try {
      const read = telemetry.reader();
      Object.assign(kept, { requests: 3, published: 5, delivered: 40, slow: 1, subscribers: 8 });
      const closeStream = telemetry.streamOpened("Chat");
      telemetry.streamOpened("Chat");
      closeStream();
      const sample = await read();
      const text = await metrics.scrape();
      const value = (name: string) =>
        Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
      expect(value("switchboard_messages_published_total")).toBe(5);
      expect(value("switchboard_deliveries_total")).toBe(40);
      expect(value("switchboard_slow_consumer_disconnects_total")).toBe(1);
      expect(value("switchboard_subscribers")).toBe(8);
      expect(text).toMatch(/^switchboard_open_streams\{rpc="Chat"\} 1$/m);
      expect(sample.openStreams.get("Chat")).toBe(1);
      // The sample's rates are the same counts over the reader's window.
      expect(sample.publishedPerSecond).toBeGreaterThan(0);
      expect(sample.deliveredPerSecond / sample.publishedPerSecond).toBeCloseTo(8, 5);
      expect(sample.requestsPerSecond / sample.publishedPerSecond).toBeCloseTo(3 / 5, 5);
    } finally {
      telemetry.close();
    }
  });
});
