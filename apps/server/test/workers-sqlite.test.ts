// WORKERS=2 on the embedded SQLite store: two worker processes share one database file, and the
// machine answers as one server, whichever worker a client reaches. A publisher on one worker
// and a subscriber on the other; racing publishers through both into one room; one idempotency
// key through both; presence, ListRooms, WatchRooms, StreamMetrics and /metrics for the whole
// machine; the publish rate and the stream cap counted once for the machine.
import type { Message, Metric, RoomsEvent } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { codeName, StreamReader, uniqueRoom, within } from "./support.js";
import { clientPerWorker, eventually, history, once, type PinnedClient } from "./workers.js";

const GRACE_MS = 400;
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function subscribe(p: PinnedClient, room: string, user: string, sinceOffset?: bigint) {
  return new StreamReader<Message>(
    (signal) => p.client.subscribeMessages({ room, user, sinceOffset }, { signal }),
    `${user}'s subscription on ${p.instance}`,
  );
}

describe("WORKERS=2 on SQLite", () => {
  let server: ServerProcess;
  let one: PinnedClient;
  let two: PinnedClient;
  beforeAll(async () => {
    server = await startServer({
      env: { WORKERS: "2", PRESENCE_GRACE_MS: String(GRACE_MS), MAX_STREAMS_PER_IDENTITY: "0" },
    });
    await server.waitForRecord((r) => r.msg === "all workers listening", 20_000);
    [one, two] = (await clientPerWorker(server, 2)) as [PinnedClient, PinnedClient];
  });
  afterAll(async () => {
    await server?.close();
  });

  it("delivers a message published through one worker to a subscriber on the other, in order", async () => {
    expect(one.instance).not.toBe(two.instance);
    const room = uniqueRoom("cross");
    const reader = subscribe(two, room, "reader");
    await reader.waitFor((m) => m.id === "system");
    const sent: bigint[] = [];
    for (let i = 0; i < 30; i++) {
      sent.push((await one.client.sendMessage({ room, user: "writer", content: `m${i}` })).offset);
    }
    await reader.waitFor((m) => m.content === "m29");
    const chats = reader.received.filter((m) => m.user === "writer");
    expect(chats.map((m) => m.content)).toEqual(range(0, 29).map((i) => `m${i}`));
    expect(chats.map((m) => m.offset)).toEqual(sent);
    reader.cancel();
  });

  it("gives racing publishers through both workers one gapless sequence, and one idempotency key one message", async () => {
    const room = uniqueRoom("race");
    const readers = [subscribe(one, room, "r1"), subscribe(two, room, "r2")];
    for (const r of readers) await r.waitFor((m) => m.id === "system");
    // 4 publishers per worker, 25 messages each, all at once; plus the same key through both.
    const publishers = [one, two].flatMap((p) => [0, 1, 2, 3].map((k) => ({ p, k })));
    const acks = await Promise.all(
      publishers.map(async ({ p, k }) => {
        const offsets: bigint[] = [];
        for (let i = 0; i < 25; i++) {
          const sent = p.client.sendMessage({ room, user: `${p.instance}/${k}`, content: `${i}` });
          offsets.push((await sent).offset);
        }
        return offsets;
      }),
    );
    const [keyed1, keyed2] = await Promise.all(
      [one, two].map((p) =>
        p.client.sendMessage({ room, user: "k", content: "keyed", clientMessageId: "same-key" }),
      ),
    );
    expect(keyed2?.messageId).toBe(keyed1?.messageId);
    expect(keyed2?.offset).toBe(keyed1?.offset);
    const stored = await history(one.client, room);
    const chatOffsets = acks.flat().map(Number).concat(Number(keyed1?.offset));
    // The two JOINs and the chats: one offset each, 1 to N, no gap, no duplicate.
    expect(stored.map((m) => Number(m.offset))).toEqual(range(1, stored.length));
    expect(stored).toHaveLength(2 + 8 * 25 + 1);
    expect(new Set(chatOffsets).size).toBe(chatOffsets.length);
    expect(stored.filter((m) => m.content === "keyed")).toHaveLength(1);
    // Each publisher's messages in the order it sent them.
    for (const offsets of acks) expect(offsets).toEqual([...offsets].sort((a, b) => Number(a - b)));
    // Both subscribers saw the whole sequence after their own JOIN, in order.
    for (const r of readers) {
      await r.waitFor((m) => m.content === "keyed", 10_000);
      const seen = r.received.filter((m) => m.offset > 0n).map((m) => Number(m.offset));
      expect(seen).toEqual(range(seen[0] as number, stored.length));
      r.cancel();
    }
  });

  it("counts a user once across workers: one JOIN, and one LEAVE after the grace when the last subscription ends on either", async () => {
    const room = uniqueRoom("presence");
    const onOne = subscribe(one, room, "ann");
    await onOne.waitFor((m) => m.id === "system");
    const onTwo = subscribe(two, room, "ann");
    await onTwo.waitFor((m) => m.id === "system");
    for (const p of [one, two]) {
      const { members } = await p.client.listMembers({ room });
      expect(members.map((m) => [m.user, m.connections])).toEqual([["ann", 2]]);
    }
    // The subscription on one worker ends; the user is still on the other: no LEAVE.
    onOne.cancel();
    await sleep(GRACE_MS * 3);
    const kinds = async () =>
      (await history(two.client, room)).map((m) => `${m.user} ${m.content}`);
    expect(await kinds()).toEqual(["ann ann joined"]);
    expect((await one.client.listMembers({ room })).members.map((m) => m.connections)).toEqual([1]);
    // Back on the first worker within the grace after the second ends: neither LEAVE nor JOIN.
    onTwo.cancel();
    await eventually(
      async () => (await one.client.listMembers({ room })).members[0]?.connections === 0,
      5_000,
      "ann to be away",
    );
    const back = subscribe(one, room, "ann");
    await back.waitFor((m) => m.id === "system");
    await sleep(GRACE_MS * 3);
    expect(await kinds()).toEqual(["ann ann joined"]);
    // Gone for good: one LEAVE, after the grace.
    back.cancel();
    await eventually(
      async () => (await kinds()).length === 2,
      5_000,
      "ann's LEAVE after the grace",
    );
    await sleep(GRACE_MS * 2);
    expect(await kinds()).toEqual(["ann ann joined", "ann ann left"]);
    expect((await two.client.listMembers({ room })).members).toEqual([]);
  });

  it("answers ListRooms and WatchRooms for the whole machine", async () => {
    const room = uniqueRoom("directory");
    const watch = new StreamReader<RoomsEvent>(
      (signal) => one.client.watchRooms({}, { signal }),
      "WatchRooms on the first worker",
    );
    await watch.waitFor((e) => e.snapshot);
    // A subscriber and a message on the other worker only.
    const reader = subscribe(two, room, "zoe");
    await reader.waitFor((m) => m.id === "system");
    await two.client.sendMessage({ room, user: "zoe", content: "hello" });
    const change = await watch.waitFor(
      (e) => e.rooms.some((r) => r.name === room && r.lastOffset === 2n && r.subscriberCount === 1),
      5_000,
    );
    expect(change.rooms.find((r) => r.name === room)?.memberCount).toBe(1);
    const listed = (await one.client.listRooms({})).rooms.find((r) => r.name === room);
    expect([listed?.messageCount, listed?.subscriberCount, listed?.memberCount]).toEqual([
      2n,
      1,
      1,
    ]);
    reader.cancel();
    watch.cancel();
  });

  it("reports the whole machine in StreamMetrics, and every worker's counts in /metrics", async () => {
    const room = uniqueRoom("metrics");
    const readers = [subscribe(one, room, "m1"), subscribe(two, room, "m2")];
    for (const r of readers) await r.waitFor((m) => m.id === "system");
    const metrics = new StreamReader<Metric>(
      (signal) => one.client.streamMetrics({ intervalSeconds: 1 }, { signal }),
      "StreamMetrics",
    );
    const open = await metrics.waitFor(
      (m) => m.name === "open_streams" && m.labels.rpc === "SubscribeMessages",
      10_000,
    );
    // Both workers' subscriptions, labelled with the machine (no worker's #N) and its 3
    // processes (the primary and two workers).
    expect(open.value).toBeGreaterThanOrEqual(2);
    expect(open.labels.instance).toBe(`127.0.0.1:${server.port}`);
    expect(open.labels.processes).toBe("3");
    const cpu = await metrics.waitFor((m) => m.name === "cpu_usage");
    expect(cpu.labels.scope).toBe("machine");
    metrics.cancel();
    // /metrics lands on either worker and sums both: both subscribers, whichever answers.
    for (let i = 0; i < 3; i++) {
      const { body } = await once(`${server.baseUrl}/metrics`);
      const subscribers = Number(/^switchboard_subscribers (\S+)$/m.exec(body)?.[1]);
      expect(subscribers).toBeGreaterThanOrEqual(2);
      // The JOINs were written by both workers, each in its own write transactions.
      const transactions = Number(
        /^switchboard_store_write_transactions_total (\S+)$/m.exec(body)?.[1],
      );
      expect(transactions, "write transactions in /metrics").toBeGreaterThanOrEqual(2);
      expect(body).toMatch(/^switchboard_store_write_lock_waits_total \d+$/m);
    }
    for (const r of readers) r.cancel();
  });
});

describe("WORKERS=2 on SQLite: limits for the machine", () => {
  const RATE = 2;
  const BURST = 10;
  const MAX_STREAMS = 3;
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({
      env: {
        WORKERS: "2",
        PUBLISH_RATE: String(RATE),
        PUBLISH_BURST: String(BURST),
        MAX_STREAMS_PER_IDENTITY: String(MAX_STREAMS),
      },
    });
    await server.waitForRecord((r) => r.msg === "all workers listening", 20_000);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("holds one publish token bucket per identity across both workers", async () => {
    const room = uniqueRoom("rate");
    const windowMs = 2_000;
    const started = Date.now();
    const outcomes: number[] = [];
    // Connections of their own, alternating workers, as fast as they are answered.
    while (Date.now() - started < windowMs) {
      const batch = await Promise.all(
        [0, 1, 2, 3].map(() =>
          once(`${server.baseUrl}/chat.ChatService/SendMessage`, {
            room,
            user: "u",
            content: "x",
          }),
        ),
      );
      outcomes.push(...batch.map((r) => r.status));
    }
    const elapsedS = (Date.now() - started) / 1000;
    const accepted = outcomes.filter((s) => s === 200).length;
    // One bucket for the machine: the burst plus the refill, not twice that.
    expect(accepted).toBeLessThanOrEqual(BURST + Math.ceil(RATE * elapsedS) + 1);
    expect(accepted).toBeGreaterThanOrEqual(BURST);
    expect(outcomes.filter((s) => s === 429).length).toBeGreaterThan(0);
    const served = new Set(
      server
        .records()
        .filter((r) => r.msg === "rpc" && String(r.method).endsWith("SendMessage"))
        .map((r) => String(r.instance)),
    );
    expect(served.size).toBe(2);
  });

  it("caps one identity's streams for the machine, not per worker", async () => {
    const [one, two] = (await clientPerWorker(server, 2)) as [PinnedClient, PinnedClient];
    const room = uniqueRoom("streams");
    const open = [one, two, one].map((p, i) => subscribe(p, room, `s${i}`));
    for (const r of open) await r.waitFor((m) => m.id === "system");
    // A fourth, on either worker: refused, as a peer sees it.
    for (const p of [one, two]) {
      const refused = subscribe(p, room, "s-extra");
      const err = await refused.ended;
      expect(err === undefined ? "clean end" : `${codeName(err.code)}: ${err.rawMessage}`).toBe(
        `ResourceExhausted: too many open streams (MAX_STREAMS_PER_IDENTITY ${MAX_STREAMS})`,
      );
    }
    // One ends: its slot is free again, on the other worker too.
    open[0]?.cancel();
    await within(
      (async () => {
        for (;;) {
          const again = subscribe(two, room, "s-again");
          const first = await again
            .waitFor((m) => m.id === "system", 5_000)
            .then(
              () => "open",
              () => "refused",
            );
          if (first === "open") return again;
          await sleep(100);
        }
      })(),
      10_000,
      "a stream to open once one of the three ended",
    ).then((r) => r.cancel());
    for (const r of open) r.cancel();
  });
});
