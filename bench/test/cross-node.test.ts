// The cross-node scenario measures what it claims: rooms on 3 different cluster masters, every
// subscriber on a node other than its room's publisher, every delivery to every subscriber counted
// over the merged subscriber sets, and the report's section compares the setups.
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { skipWithout } from "../../apps/server/test/tools.js";
import { type ClusterMaster, parseMasters, slotOf } from "../src/lib/redis-cluster.js";
import type { CrossNodeRun, CrossNodeStep, Results } from "../src/lib/results.js";
import { renderMarkdown } from "../src/report/markdown.js";
import {
  CROSS_NODE_COUNT,
  crossNodeScenario,
  pickRooms,
  placeRooms,
  roomLogKey,
} from "../src/scenarios/cross-node.js";

const THIRDS: ClusterMaster[] = [
  { port: 7000, slots: [[0, 5460]] },
  { port: 7001, slots: [[5461, 10922]] },
  { port: 7002, slots: [[10923, 16383]] },
];

describe("room placement", () => {
  it("picks one room per master, by the slot of the room's keys", () => {
    const rooms = pickRooms(THIRDS);
    expect(rooms).toHaveLength(3);
    expect(new Set(rooms.map((r) => r.room)).size).toBe(3);
    rooms.forEach((r, i) => {
      const [from, to] = (THIRDS[i] as ClusterMaster).slots[0] as [number, number];
      expect(r.slot).toBe(slotOf(roomLogKey(r.room)));
      // The hash tag: every key of the room is in the same slot.
      expect(slotOf(`sb:{${r.room}}:seq`)).toBe(r.slot);
      expect(r.slot).toBeGreaterThanOrEqual(from);
      expect(r.slot).toBeLessThanOrEqual(to);
    });
  });

  it("puts no subscriber on its room's publisher node and spreads them evenly", () => {
    const placed = placeRooms(
      pickRooms(THIRDS).map(({ room, slot }) => ({ room, slot })),
      333,
    );
    for (const r of placed) {
      expect(r.subscribersPerNode[r.publishVia]).toBe(0);
      expect(r.subscribersPerNode.reduce((a, n) => a + n, 0)).toBe(333);
    }
    expect(new Set(placed.map((r) => r.publishVia)).size).toBe(CROSS_NODE_COUNT);
    const perNode = [0, 1, 2].map((n) =>
      placed.reduce((a, r) => a + (r.subscribersPerNode[n] ?? 0), 0),
    );
    expect(perNode).toEqual([333, 333, 333]);
  });

  it("reads only masters that serve slots from CLUSTER NODES", () => {
    const text = [
      "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460",
      "b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [5461->-c]",
      "c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383",
      // A replica whose new role has not been gossiped yet: a master with no slot.
      "d 127.0.0.1:7003@17003 master - 0 0 4 connected",
      "e 127.0.0.1:7004@17004 slave a 0 0 1 connected",
      "f 127.0.0.1:7005@17005 master,fail - 0 0 6 disconnected 7-9",
    ].join("\n");
    expect(parseMasters(text)).toEqual([
      { port: 7000, slots: [[0, 5460]] },
      { port: 7001, slots: [[5461, 10922]] },
      { port: 7002, slots: [[10923, 16383]] },
    ]);
  });
});

describe.skipIf(skipWithout("redis-server", "redis-cli"))(
  "cross-node fan-out on one Redis and on a real Redis Cluster",
  () => {
    it("delivers every message across nodes, rooms on 3 masters, and stops everything", async () => {
      const lines: string[] = [];
      const runs = await crossNodeScenario({
        setups: ["redis", "redis-cluster"],
        subscribers: 30,
        repetitions: 1,
        // 10 messages/s per room; one step.
        deliveryRates: [300],
        stepMs: 1000,
        start: {},
        log: (line) => lines.push(line),
      });
      expect(runs.map((r) => [r.setup, r.error])).toEqual([
        ["redis", undefined],
        ["redis-cluster", undefined],
      ]);
      for (const run of runs) {
        expect(run.subscribers).toBe(30);
        for (const r of run.rooms) expect(r.subscribersPerNode[r.publishVia]).toBe(0);
        const step = run.steps[0] as CrossNodeStep;
        expect(run.steps).toHaveLength(1);
        expect(step.rate).toBe(10);
        expect(step.sent).toBe(30);
        expect(step.expected).toBe(10 * 30);
        expect(step.delivered).toBe(10 * 30);
        expect(step.subscribersMissing).toBe(0);
        expect(step.failedSends).toBe(0);
        expect(step.max).toBeGreaterThanOrEqual(step.p99);
        // Every node worked and was read, and its probe answered.
        expect(step.nodeCpuPercent).toHaveLength(3);
        for (const cpu of step.nodeCpuPercent ?? []) expect(cpu).toBeGreaterThan(0);
        expect(step.redisCpuSeconds).toBeGreaterThanOrEqual(0);
        expect(step.loopMaxMs).toBeGreaterThan(0);
      }
      // On the cluster: three rooms on three different masters, each slot as the cluster computed it
      // (the scenario checks CLUSTER KEYSLOT and records an error otherwise).
      const cluster = runs[1] as CrossNodeRun;
      expect(new Set(cluster.rooms.map((r) => r.masterPort)).size).toBe(3);
      // Nothing left running: the cluster's ports are closed.
      for (const r of cluster.rooms) {
        expect(() =>
          execFileSync("redis-cli", ["-p", String(r.masterPort), "ping"], { stdio: "pipe" }),
        ).toThrow();
      }
    }, 240_000);
  },
);

describe("the report's cross-node section", () => {
  const step = (over: Partial<CrossNodeStep>): CrossNodeStep => ({
    rate: 40,
    offered: 39_960,
    sent: 120,
    expected: 39_960,
    delivered: 39_960,
    deliveriesPerSecond: 39_960,
    failedSends: 0,
    p50: 5,
    p99: 20,
    max: 30,
    sustained: true,
    attempt: 1,
    nodeCpuPercent: [30, 30, 30],
    redisCpuPercent: 5,
    ...over,
  });
  const run = (setup: CrossNodeRun["setup"], steps: CrossNodeStep[]): CrossNodeRun => ({
    server: setup === "redis" ? "3 nodes, one Redis" : "3 nodes, Redis Cluster",
    setup,
    nodes: 3,
    subscribers: 999,
    rooms: [],
    repetition: 1,
    steps,
    sustained: steps.filter((s) => s.sustained).at(-1)?.deliveriesPerSecond ?? 0,
    tries: 1,
    load: "1.00, 1.00, 1.00",
  });

  it("reports each setup's sustained rate and the ratio cluster / one Redis", () => {
    const results: Results = {
      startedAt: "2026-01-01T00:00:00.000Z",
      machine: {},
      quick: true,
      repetitions: 1,
      fanout: [],
      unary: [],
      memory: [],
      slowConsumer: [],
      streamThroughput: [],
      crossNode: [
        run("redis", [step({}), step({ rate: 80, deliveriesPerSecond: 79_920, sustained: false })]),
        run("redis-cluster", [
          step({ rate: 40, deliveriesPerSecond: 19_980, p99: 90 }),
          step({ rate: 80, sustained: false, p99: 300 }),
        ]),
      ],
    };
    const md = renderMarkdown(results, []);
    expect(md).toContain("## 7. Cross-node fan-out");
    expect(md).toMatch(/\| 3 nodes, one Redis \| 39,960 \(39,960–39,960\) \| 1\.00× \|/);
    expect(md).toMatch(/\| 3 nodes, Redis Cluster \| 19,980 \(19,980–19,980\) \| 0\.50× \|/);
    expect(md).toContain("19,980 vs 39,960 deliveries/s = 0.50×; p99 90 vs 20 ms");
    // Every step is in the step table, the failed ones marked.
    expect(md.match(/^\| redis(-cluster)? \| 1 \| 1 \|/gm)).toHaveLength(4);
    expect(md.match(/\*\*no\*\* \|$/gm)).toHaveLength(2);
  });
});
