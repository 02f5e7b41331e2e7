// A Redis Cluster's masters failing under Switchboard, on a cluster of this file's own (it kills,
// freezes and fails over nodes, which the run's shared cluster must not see):
//
// kill -9 of the master that owns a room, under publishers and subscribers on two Switchboard
// nodes, with REDIS_WAIT_REPLICAS=1 and with 0. Publishers send with idempotency keys and retry a
// failed send with the same key; subscribers resume (libs/client). The room's replica is made to
// lag (DEBUG SLEEP, its link cut) for a second before the kill, so that the master has writes
// its replica does not have: the case the wait is for. Each case asserts what the README's "On a
// Redis Cluster" promises:
// - with the wait, no acknowledged message is lost, and no subscriber sees live a message that
//   was not acknowledged (nor a later one) by then, so none that the failover took back; the
//   promoted replica has no replica of its own until the killed node is back (restarted here; it
//   rejoins as the new replica), and meanwhile sends are refused at once, unstored, naming
//   REDIS_WAIT_REPLICAS;
// - without it, what is lost is only what was acknowledged while the replica lagged, nothing
//   acknowledged after the promotion is lost, and subscribers resume with no duplicate, or end
//   with out_of_range when the history went back past them.
// The send latency (p50) with and without the wait is measured on the same cluster before the
// kill and printed.
//
// And a manual failover of a room's master under its subscribers: the server drops their
// sharded subscriptions; they resume at the new master with no gap.
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createFailoverTransport, subscribeResumable } from "@switchboard/client";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type Message } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { RedisCluster, redisClusterTools } from "./redis-cluster.js";
import { chatClient, StreamReader, uniqueRoom, within } from "./support.js";

const missing = await redisClusterTools();

async function until(condition: () => boolean | Promise<boolean>, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every stored message of `room`: offset → content for the writers, every offset, duplicates. */
async function history(client: Client<typeof ChatService>, room: string) {
  const offsets = new Map<string, number>();
  const contentAt = new Map<number, string>();
  const all: number[] = [];
  let duplicates = 0;
  let after = 0n;
  for (;;) {
    const page = await client.getHistory({ room, afterOffset: after, limit: 500 });
    for (const m of page.messages) {
      all.push(Number(m.offset));
      if (m.user !== "writer") continue;
      if (offsets.has(m.content)) duplicates++;
      offsets.set(m.content, Number(m.offset));
      contentAt.set(Number(m.offset), m.content);
    }
    if (!page.hasMore) return { offsets, contentAt, all, duplicates };
    after = page.messages.at(-1)?.offset ?? after;
  }
}

/** A writer's message as a subscriber received it. */
interface Receipt {
  offset: number;
  content: string;
  atMs: number;
}

/** A resumable subscriber over the given nodes that records what it sees. */
function resumableReader(baseUrls: string[], room: string, user: string) {
  const client = createClient(
    ChatService,
    createFailoverTransport(
      baseUrls.map((baseUrl) => createNodeTransport({ baseUrl, protocol: "grpc" })),
    ),
  );
  const controller = new AbortController();
  const offsets: number[] = [];
  const writes: Receipt[] = [];
  const states: string[] = [];
  const failure: { error?: ConnectError } = {};
  const done = (async () => {
    try {
      for await (const m of subscribeResumable(
        client,
        { room, user, sinceOffset: 0n },
        {
          signal: controller.signal,
          backoff: { initialMs: 50, maxMs: 500, multiplier: 2, jitter: 0.1 },
          onStateChange: (state) => states.push(state),
        },
      )) {
        if (m.offset === 0n) continue;
        offsets.push(Number(m.offset));
        if (m.user === "writer") {
          writes.push({ offset: Number(m.offset), content: m.content, atMs: Date.now() });
        }
      }
    } catch (err) {
      // How the subscription ended, if not cancelled here (a history that went back: OutOfRange).
      if (ConnectError.from(err).code !== Code.Canceled) failure.error = ConnectError.from(err);
    }
  })();
  return { offsets, writes, states, failure, stop: () => controller.abort(), done };
}

/** One send attempt, as its writer saw it. */
interface Attempt {
  content: string;
  startMs: number;
  endMs: number;
  /** The acknowledged offset; undefined when it failed. */
  offset?: number;
  code?: string;
  message?: string;
}

/** The longest time between two acknowledgements (from `from` on), ms. */
function longestGap(times: number[], from: number): number {
  const after = [from, ...times.filter((t) => t >= from)];
  return Math.max(...after.slice(1).map((t, i) => t - (after[i] as number)));
}

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** REDIS_WAIT_TIMEOUT_MS of the nodes here. */
const WAIT_TIMEOUT_MS = 500;

describe.skipIf(missing !== undefined)(
  `Redis Cluster masters failing under load${missing === undefined ? "" : ` (skipped: ${missing})`}`,
  () => {
    let cluster: RedisCluster;
    let nodes: ServerProcess[] = [];
    beforeAll(async () => {
      cluster = await RedisCluster.start();
    });
    afterEach(async () => {
      await Promise.all(nodes.map((n) => n.close()));
      nodes = [];
    });
    afterAll(async () => {
      await cluster?.close();
    });

    test.each([1, 0])(
      "kill -9 of a room's master, REDIS_WAIT_REPLICAS=%i: publishers retry with their keys, subscribers resume; what is lost and what subscribers saw is what the README says",
      async (wait) => {
        const store = cluster.url;
        nodes = await Promise.all(
          [0, 1].map(() =>
            startServer({
              env: {
                STORE: store,
                REDIS_WAIT_REPLICAS: String(wait),
                REDIS_WAIT_TIMEOUT_MS: String(WAIT_TIMEOUT_MS),
                PRESENCE_GRACE_MS: "1000",
              },
            }),
          ),
        );
        const [a, b] = nodes as [ServerProcess, ServerProcess];
        const clients = [chatClient(a.baseUrl), chatClient(b.baseUrl)];

        // The send latency (one writer, one at a time), before anything fails.
        const latencyRoom = uniqueRoom("latency");
        const timings: number[] = [];
        for (let i = 0; i < 220; i++) {
          const start = performance.now();
          await (clients[0] as Client<typeof ChatService>).sendMessage({
            room: latencyRoom,
            user: "timer",
            content: `t${i}`,
          });
          if (i >= 20) timings.push(performance.now() - start);
        }

        // And 20 senders at once through one node: WAIT blocks the node's connection to the
        // master until the replica answers, so concurrent sends queue behind it.
        const burst: number[] = [];
        const burstStart = performance.now();
        await Promise.all(
          Array.from({ length: 20 }, async (_, w) => {
            for (let i = 0; i < 25; i++) {
              const start = performance.now();
              await (clients[0] as Client<typeof ChatService>).sendMessage({
                room: latencyRoom,
                user: "timer",
                content: `b${w}-${i}`,
              });
              burst.push(performance.now() - start);
            }
          }),
        );
        const burstRate = Math.round(burst.length / ((performance.now() - burstStart) / 1000));

        const room = uniqueRoom("failover");
        const key = `sb:{${room}}:log`;
        const master = await cluster.masterOf(key);
        const readers = [
          resumableReader([a.baseUrl, b.baseUrl], room, "sub-a"),
          resumableReader([b.baseUrl, a.baseUrl], room, "sub-b"),
        ];
        await until(() => readers.every((r) => r.states.includes("live")), 10_000, "readers live");

        const attempts: Attempt[] = [];
        const acked = new Map<string, number>();
        const ackedAt = new Map<string, number>();
        let writing = true;
        const writers = clients.map(async (client, w) => {
          for (let i = 0; writing; i++) {
            const content = `w${w}-${i}`;
            // Retried with the same key until acknowledged: a retry never stores it twice.
            for (;;) {
              const attempt: Attempt = { content, startMs: Date.now(), endMs: 0 };
              attempts.push(attempt);
              try {
                const r = await client.sendMessage(
                  { room, user: "writer", content, clientMessageId: content },
                  { timeoutMs: 3_000 },
                );
                attempt.endMs = Date.now();
                attempt.offset = Number(r.offset);
                acked.set(content, Number(r.offset));
                ackedAt.set(content, attempt.endMs);
                break;
              } catch (err) {
                attempt.endMs = Date.now();
                attempt.code = Code[ConnectError.from(err).code];
                attempt.message = ConnectError.from(err).rawMessage;
                if (!writing) break;
                await sleep(50);
              }
            }
            await sleep(2);
          }
        });

        await until(() => acked.size >= 200, 20_000, "acknowledged sends before the kill");
        // The room's replica falls behind: it stops for 2 s (DEBUG SLEEP) and its replication
        // link is cut, so it cannot catch up; the master is killed 1 s into that. Whatever the
        // master acknowledged meanwhile without the wait is not on the replica that is promoted.
        const replica = await cluster.replicaOf(master);
        const frozenAt = Date.now();
        const frozen = cluster.freeze(replica, 2_000);
        await sleep(100);
        await cluster.cutReplicas(master);
        const ackedAtFreeze = acked.size;
        await sleep(1_000);
        const killedAt = Date.now();
        const ackedAtKill = acked.size;
        await cluster.kill(master);
        // Acknowledgements the master sent before it died may arrive until now.
        const deadAt = Date.now();
        let promotedAt = 0;
        let promotedLast: number | undefined;
        let restartedAt = 0;
        let restarted = false;
        try {
          // The node stays ready: the other masters answer (only this room's calls fail).
          const readyz = await fetch(`${a.baseUrl}/readyz`);
          expect(readyz.status).toBe(200);
          await frozen.done;
          await cluster.waitForPromotion(key, master);
          promotedAt = Date.now();
          // The room's last offset on the promoted replica: what it had when it took over.
          await until(
            async () => {
              promotedLast = await clients[1]
                ?.getHistory({ room, limit: 1 })
                .then((page) => Number(page.lastOffset))
                .catch(() => undefined);
              return promotedLast !== undefined;
            },
            10_000,
            "the room's history on the promoted replica",
          );
          if (wait === 1) {
            // No replica to wait for: nothing is acknowledged until one is back.
            await sleep(1_000);
            restartedAt = Date.now();
            await cluster.restart(master);
            restarted = true;
          }
          await until(() => acked.size >= ackedAtKill + 200, 30_000, "sends after the promotion");
        } finally {
          writing = false;
          await Promise.all(writers);
          // The next test gets the cluster whole again (the killed node back as a replica).
          if (!restarted) await cluster.restart(master);
        }

        const viewer = clients[1] as Client<typeof ChatService>;
        const stored = await history(viewer, room);
        const lost = [...acked.keys()].filter((content) => !stored.offsets.has(content));
        const moved = [...acked].filter(
          ([content, offset]) =>
            stored.offsets.has(content) && stored.offsets.get(content) !== offset,
        );
        const last = stored.all.at(-1) as number;
        await until(
          () => readers.every((r) => r.offsets.at(-1) === last || r.failure.error !== undefined),
          20_000,
          "subscribers to reach the last offset or end",
        ).catch(() => {});
        for (const r of readers) {
          r.stop();
          await r.done;
        }
        const caughtUp = readers.every((r) => r.offsets.at(-1) === last);
        const readerErrors = readers.map((r) => r.failure.error?.rawMessage ?? "none");
        // What each subscriber saw against the history from its first offset on.
        const readerGaps = readers.map((r) => {
          const first = r.offsets[0] as number;
          const expected = stored.all.filter((o) => o >= first);
          const seen = new Set(r.offsets);
          return expected.filter((o) => !seen.has(o)).length;
        });
        // Messages a subscriber received from the old master that history holds no more at
        // that offset: it saw a message the failover took back.
        const seenThenLost = readers.map(
          (r) =>
            r.writes.filter((w) => w.atMs < deadAt && stored.contentAt.get(w.offset) !== w.content)
              .length,
        );
        // Messages a subscriber received more than a second before that message, or a later one,
        // was acknowledged: it saw a send that had failed (or had not succeeded yet). Counted
        // before the kill, and past the promoted replica's last offset: a subscriber that resumes
        // on the promoted replica may replay a message stored before the replica fell behind
        // whose own wait failed, as its history holds it (the README says so).
        const acks = attempts.filter((t) => t.offset !== undefined);
        const seenBeforeAck = readers.map(
          (r) =>
            r.writes.filter(
              (w) =>
                (w.atMs < killedAt || w.offset > (promotedLast ?? 0)) &&
                !acks.some((t) => (t.offset as number) >= w.offset && t.endMs <= w.atMs + 1_000),
            ).length,
        );
        const failures = attempts.filter((t) => t.code !== undefined);
        // Refused at once because the promoted master had no replica (REDIS_WAIT_REPLICAS).
        const refused = failures.filter((t) =>
          /replicas? in sync and REDIS_WAIT_REPLICAS is 1; the message was not stored/.test(
            t.message ?? "",
          ),
        );
        const lostAckTimes = lost.map((content) => ackedAt.get(content) as number);

        console.log(
          `[cluster failover] REDIS_WAIT_REPLICAS=${wait}: send p50 ${p50(timings).toFixed(2)} ms ` +
            `(${timings.length} sequential sends); 20 concurrent senders: p50 ` +
            `${p50(burst).toFixed(2)} ms, ${burstRate} sends/s; master ${master} killed, replica ` +
            `serving after ${promotedAt - killedAt} ms; acknowledged ${acked.size} ` +
            `(${ackedAtKill} before the kill, ${ackedAtKill - ackedAtFreeze} of them while the ` +
            `replica lagged); lost ${lost.length}; acknowledged at another ` +
            `offset than stored ${moved.length}; duplicates ${stored.duplicates}; failed ` +
            `attempts ${failures.length} (${[...new Set(failures.map((f) => f.code))].join(", ")}); ` +
            `refused at once without a replica ${refused.length} (slowest ` +
            `${Math.max(0, ...refused.map((t) => t.endMs - t.startMs))} ms); subscribers ` +
            `caught up: ${caughtUp}, offsets missed per subscriber ${readerGaps.join("/")}, ` +
            `seen then lost ${seenThenLost.join("/")}, seen before acknowledged ` +
            `${seenBeforeAck.join("/")}, ended with ${readerErrors.join(" / ")}; ` +
            `longest time without an acknowledgement ${longestGap([...ackedAt.values()].sort(), killedAt)} ms`,
        );

        for (const f of failures) expect(["Unavailable", "DeadlineExceeded"]).toContain(f.code);
        expect(stored.duplicates).toBe(0);
        for (const r of readers) expect(r.states).toContain("reconnecting");
        // Each subscriber: offsets in order, each once, across its resumes.
        for (const r of readers) {
          expect(r.offsets.every((o, i) => i === 0 || o > (r.offsets[i - 1] as number))).toBe(true);
        }
        if (wait === 1) {
          expect(lost).toEqual([]);
          expect(moved).toEqual([]);
          expect(readerErrors).toEqual(["none", "none"]);
          expect(caughtUp).toBe(true);
          expect(readerGaps).toEqual([0, 0]);
          // Live only what is durable.
          expect(seenThenLost).toEqual([0, 0]);
          expect(seenBeforeAck).toEqual([0, 0]);
          // While the promoted master had no replica: refused at once, not after the wait.
          expect(refused.length).toBeGreaterThan(0);
          for (const t of refused) expect(t.endMs - t.startMs).toBeLessThan(WAIT_TIMEOUT_MS);
          const waitedOut = failures.filter(
            (t) =>
              t.startMs >= promotedAt + 500 &&
              t.endMs <= restartedAt &&
              t.endMs - t.startMs >= WAIT_TIMEOUT_MS,
          );
          expect(waitedOut).toEqual([]);
        } else {
          // Lost: only what the master acknowledged after its replica stopped taking writes.
          expect(lost.length).toBeGreaterThan(0);
          expect(Math.min(...lostAckTimes)).toBeGreaterThanOrEqual(frozenAt);
          expect(Math.max(...lostAckTimes)).toBeLessThanOrEqual(deadAt);
          // Nothing acknowledged once the replica served is lost or moved.
          const afterPromotion = [...acked].filter(
            ([content]) => (ackedAt.get(content) as number) >= promotedAt,
          );
          expect(afterPromotion.length).toBeGreaterThan(0);
          for (const [content, offset] of afterPromotion) {
            expect(stored.offsets.get(content)).toBe(offset);
          }
          // A subscriber that had seen offsets the history no longer holds is told its history
          // was reset (a node that saw them gave the room a new epoch), or, resuming where no
          // node has noticed yet, that its offset is beyond the room's last, as the README says;
          // else it caught up with no gap.
          for (const r of readers) {
            if (r.failure.error === undefined) {
              expect(r.offsets.at(-1)).toBe(last);
            } else if (r.failure.error.code === Code.FailedPrecondition) {
              expect(r.failure.error.rawMessage).toMatch(
                /^history of room \S+ was reset \(epoch \S+ is gone\)/,
              );
            } else {
              expect(Code[r.failure.error.code]).toBe("OutOfRange");
              expect(r.failure.error.rawMessage).toMatch(
                /^since_offset \d+ is beyond the room's last offset \d+/,
              );
            }
          }
        }
      },
      120_000,
    );

    test("a manual failover of a room's master: subscribers resume at the new master with no gap", async () => {
      nodes = await Promise.all(
        [0, 1, 2].map(() => startServer({ env: { STORE: cluster.url, PRESENCE_GRACE_MS: "200" } })),
      );
      const clients = nodes.map((n) => chatClient(n.baseUrl));
      const room = uniqueRoom("moved");
      const key = `sb:{${room}}:log`;
      const readers = [1, 2].map(
        (i) =>
          new StreamReader<Message>((signal) =>
            (clients[i] as Client<typeof ChatService>).subscribeMessages(
              { room, user: `reader-${i}` },
              { signal },
            ),
          ),
      );
      for (const reader of readers) await reader.waitFor((m) => m.id === "system");
      const writer = clients[0] as Client<typeof ChatService>;
      for (let i = 0; i < 10; i++) await writer.sendMessage({ room, user: "w", content: `a${i}` });
      for (const reader of readers) await reader.waitFor((m) => m.content === "a9");

      // The replica takes over, the old master becomes its replica: no connection breaks, and
      // Redis tells each subscriber that the room's channel left that node (SUNSUBSCRIBE).
      const master = await cluster.masterOf(key);
      const replica = await cluster.replicaOf(master);
      await cluster.cli(replica, "cluster", "failover");
      await cluster.waitForPromotion(key, master);
      // Each stream ends with Unavailable and the offset to resume from, instead of stalling.
      for (const reader of readers) {
        const ended = await within(reader.ended, 10_000, "the stream to end after the failover");
        expect(ended?.code).toBe(Code.Unavailable);
        const last = reader.received.filter((m) => m.offset > 0n).at(-1)?.offset;
        expect(ended?.rawMessage).toMatch(new RegExp(`moved\\); resume from offset ${last}$`));
      }
      const last = Number(readers[0]?.received.filter((m) => m.user === "w").at(-1)?.offset);
      // Sends work again once the node found the new master; a resumed stream gets all of them.
      const sent: number[] = [];
      for (let i = 0; i < 10; i++) {
        for (;;) {
          try {
            sent.push(
              Number((await writer.sendMessage({ room, user: "w", content: `b${i}` })).offset),
            );
            break;
          } catch {
            await sleep(100);
          }
        }
      }
      const resumed = new StreamReader<Message>((signal) =>
        (clients[1] as Client<typeof ChatService>).subscribeMessages(
          { room, user: "reader-1", sinceOffset: BigInt(last) },
          { signal },
        ),
      );
      await resumed.waitFor((m) => m.content === "b9", 10_000);
      const after = resumed.received.filter((m) => m.user === "w").map((m) => Number(m.offset));
      expect(after).toEqual(sent);
      // No gap: from the resume offset on, every offset once (presence messages the failover
      // caused, such as the readers' LEAVE and JOIN, may sit between the sends).
      const offsets = resumed.received
        .filter((m) => m.id !== "system")
        .map((m) => Number(m.offset));
      expect(offsets[0]).toBe(last + 1);
      expect(offsets).toEqual(offsets.map((_, i) => last + 1 + i));
      resumed.cancel();
    }, 60_000);
  },
);
