// WORKERS=2 on SQLite when processes die: kill -9 of one worker (the primary starts another; its
// clients resume on whichever worker they reach; its members get the presence grace), kill -9 of
// the whole group, and a restart storm: 300 subscribers on a few HTTP/2 connections resuming
// through SIGTERM and kill -9 of a worker and of the whole group, while publishers keep sending.
// Every acknowledged message is kept, and reaches every subscriber once, in offset order.
import { type Client, createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type Message } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { StreamReader, uniqueRoom, within } from "./support.js";
import {
  clientPerWorker,
  eventually,
  history,
  type PinnedClient,
  workerId,
  workerPids,
} from "./workers.js";

const GRACE_MS = 3_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const range = (from: number, to: number) =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/** A gRPC client on a connection of its own (a new one after the server drops it). */
function newClient(server: ServerProcess): Client<typeof ChatService> {
  return createClient(
    ChatService,
    createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc", httpVersion: "2" }),
  );
}

/**
 * A subscriber that resumes by itself, as a client with no library would: after any end it
 * subscribes again from the last offset it received. It records what the server sends, not a
 * filtered view: any offset other than the next one (a gap, a duplicate, a message out of
 * order) is a violation.
 */
class Follower {
  last = 0;
  readonly violations: string[] = [];
  connections = 0;
  private readonly controller = new AbortController();
  readonly done: Promise<void>;

  constructor(
    client: () => Client<typeof ChatService>,
    readonly room: string,
    readonly user: string,
  ) {
    this.done = (async () => {
      while (!this.controller.signal.aborted) {
        try {
          this.connections++;
          const stream = client().subscribeMessages(
            { room, user, sinceOffset: BigInt(this.last) },
            { signal: this.controller.signal },
          );
          for await (const m of stream) {
            if (m.offset === 0n) continue;
            const offset = Number(m.offset);
            if (offset !== this.last + 1) {
              this.violations.push(`${user}: offset ${offset} after ${this.last}`);
            }
            this.last = Math.max(this.last, offset);
          }
        } catch {
          // Ended by the server (shutdown, a dead worker, a dropped connection): resume.
        }
        await sleep(100 + Math.random() * 200);
      }
    })();
  }

  stop(): Promise<void> {
    this.controller.abort();
    return within(this.done, 10_000, `${this.user} to stop`);
  }
}

/**
 * Sends one message after another to `room` until stopped, each with its own idempotency key,
 * retrying a failed send with the same key until it is acknowledged: the acknowledgements
 * (offset and message id) are what must survive.
 */
class Publisher {
  readonly acked = new Map<string, { offset: number; id: string }>();
  private stopped = false;
  readonly done: Promise<void>;

  constructor(client: () => Client<typeof ChatService>, room: string, name: string, gapMs: number) {
    this.done = (async () => {
      for (let i = 0; !this.stopped; i++) {
        const key = `${name}-${i}`;
        for (;;) {
          try {
            const ack = await client().sendMessage(
              { room, user: name, content: key, clientMessageId: key },
              { timeoutMs: 5_000 },
            );
            this.acked.set(key, { offset: Number(ack.offset), id: ack.messageId });
            break;
          } catch {
            await sleep(100);
          }
        }
        await sleep(gapMs);
      }
    })();
  }

  stop(): Promise<void> {
    this.stopped = true;
    return within(this.done, 20_000, "the publisher to stop");
  }
}

/** A client made afresh whenever the server's primary was replaced (a restart on the same port). */
function clientSource(server: ServerProcess): () => Client<typeof ChatService> {
  let pid = server.pid;
  let client = newClient(server);
  return () => {
    if (server.pid !== pid) {
      pid = server.pid;
      client = newClient(server);
    }
    return client;
  };
}

/** kill -9 of the whole group: every worker and the primary at once, nothing flushed. */
async function killGroup(server: ServerProcess): Promise<void> {
  for (const pid of workerPids(server).values()) process.kill(pid, "SIGKILL");
  await server.kill("SIGKILL");
}

describe("WORKERS=2 on SQLite: processes that die", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ env: { WORKERS: "2", PRESENCE_GRACE_MS: String(GRACE_MS) } });
    await server.waitForRecord((r) => r.msg === "all workers listening", 20_000);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("kill -9 of a worker: nothing acknowledged is lost, its clients resume elsewhere, its members get the grace", async () => {
    const [victim, survivor] = (await clientPerWorker(server, 2)) as [PinnedClient, PinnedClient];
    const room = uniqueRoom("kill-worker");
    const ann = new StreamReader<Message>(
      (signal) => victim.client.subscribeMessages({ room, user: "ann" }, { signal }),
      "ann on the worker to be killed",
    );
    const bob = new StreamReader<Message>(
      (signal) => victim.client.subscribeMessages({ room, user: "bob" }, { signal }),
      "bob on the worker to be killed",
    );
    for (const r of [ann, bob]) await r.waitFor((m) => m.id === "system");
    const acked: bigint[] = [];
    for (let i = 0; i < 10; i++) {
      acked.push(
        (await survivor.client.sendMessage({ room, user: "pub", content: `a${i}` })).offset,
      );
    }
    await ann.waitFor((m) => m.content === "a9");
    const annLast = ann.received.at(-1)?.offset as bigint;

    const pid = workerPids(server).get(workerId(victim.instance));
    expect(pid, `the process of ${victim.instance}`).toBeDefined();
    process.kill(pid as number, "SIGKILL");
    await ann.endedWithin(10_000);
    // The other worker goes on: sends acknowledged meanwhile.
    for (let i = 0; i < 10; i++) {
      acked.push(
        (await survivor.client.sendMessage({ room, user: "pub", content: `b${i}` })).offset,
      );
    }
    // ann comes back within the grace, on whichever worker her new connection reaches.
    const again = new StreamReader<Message>(
      (signal) =>
        newClient(server).subscribeMessages(
          { room, user: "ann", sinceOffset: annLast },
          { signal },
        ),
      "ann resumed",
    );
    await again.waitFor((m) => m.content === "b9", 10_000);
    const resumed = again.received.filter((m) => m.offset > 0n).map((m) => m.offset);
    expect(resumed[0]).toBe(annLast + 1n);
    expect(resumed).toEqual(resumed.map((_, i) => annLast + 1n + BigInt(i)));
    // The primary replaced the dead worker.
    await server.waitForRecord((r) => r.msg === "worker died; starting another", 5_000);
    await eventually(() => workerPids(server).size === 2, 15_000, "a second worker again");
    // bob never came back: one LEAVE, after the grace; ann: no LEAVE, no second JOIN.
    await eventually(
      async () => (await history(survivor.client, room)).some((m) => m.content === "bob left"),
      GRACE_MS + 10_000,
      "bob's LEAVE",
    );
    const stored = await history(survivor.client, room);
    expect(stored.map((m) => Number(m.offset))).toEqual(range(1, stored.length));
    expect(stored.filter((m) => m.user !== "pub").map((m) => m.content)).toEqual([
      "ann joined",
      "bob joined",
      "bob left",
    ]);
    const byOffset = new Map(stored.map((m) => [m.offset, m.content]));
    expect(acked.map((o) => byOffset.get(o))).toEqual([
      ...range(0, 9).map((i) => `a${i}`),
      ...range(0, 9).map((i) => `b${i}`),
    ]);
    again.cancel();
    bob.cancel();
  });

  it("kill -9 of every worker at once: the primary survives and starts them all again", async () => {
    const room = uniqueRoom("kill-all-workers");
    // Each worker follows the room, so each one's death has the primary tell the others.
    const readers = (await clientPerWorker(server, 2)).map(
      (p, i) =>
        new StreamReader<Message>(
          (signal) => p.client.subscribeMessages({ room, user: `w${i}` }, { signal }),
          `the subscriber on ${p.instance}`,
        ),
    );
    for (const r of readers) await r.waitFor((m) => m.id === "system");
    const primary = server.pid;
    for (let round = 0; round < 3; round++) {
      const before = [...workerPids(server).values()];
      for (const pid of before) process.kill(pid, "SIGKILL");
      await eventually(
        () => {
          const now = [...workerPids(server).values()];
          return now.length === 2 && now.every((pid) => !before.includes(pid));
        },
        20_000,
        `two new workers after round ${round + 1}`,
      );
    }
    expect(server.pid, "the primary is the same process").toBe(primary);
    const client = newClient(server);
    await eventually(
      async () => (await client.sendMessage({ room, user: "w", content: "after" })).offset > 0n,
      10_000,
      "a send through the new workers",
    );
    for (const r of readers) r.cancel();
  });

  it("kill -9 of the whole group: every acknowledged message is there after the restart, and the sequence goes on", async () => {
    const room = uniqueRoom("kill-group");
    const client = clientSource(server);
    const publishers = [0, 1].map((k) => new Publisher(client, room, `g${k}`, 5));
    await eventually(
      () => publishers.every((p) => p.acked.size >= 20),
      20_000,
      "20 acknowledged sends from each publisher",
    );
    await killGroup(server);
    for (const p of publishers) void p.stop();
    const before = publishers.flatMap((p) => [...p.acked.values()]);
    await server.restart();
    await Promise.all(publishers.map((p) => p.stop()));
    const reader = newClient(server);
    const stored = await history(reader, room);
    const ids = new Map(stored.map((m) => [Number(m.offset), m.id]));
    for (const ack of before) expect(ids.get(ack.offset), `offset ${ack.offset}`).toBe(ack.id);
    expect(stored.map((m) => Number(m.offset))).toEqual(range(1, stored.length));
    const next = await reader.sendMessage({ room, user: "after", content: "after the restart" });
    expect(Number(next.offset)).toBe(stored.length + 1);
    expect(next.epoch).toBe((await reader.getHistory({ room, limit: 1 })).epoch);
  });

  it("a restart storm: 300 subscribers resume through SIGTERM and kill -9 of a worker and of the group, each getting every message once, in order", async () => {
    const room = uniqueRoom("storm");
    // 300 subscribers on 6 HTTP/2 connections (50 streams each), made anew after a restart.
    const sources = range(1, 6).map(() => clientSource(server));
    const followers = range(0, 299).map(
      (i) => new Follower(sources[i % 6] as () => Client<typeof ChatService>, room, `s${i}`),
    );
    const publishers = [0, 1].map((k) => new Publisher(clientSource(server), room, `p${k}`, 50));
    const acked = () => publishers.reduce((n, p) => n + p.acked.size, 0);
    /** Every follower has what was acknowledged so far (and the storm may go on). */
    const caughtUp = async (what: string) => {
      const target = Math.max(
        ...publishers.flatMap((p) => [...p.acked.values()].map((a) => a.offset)),
      );
      await eventually(
        () => followers.every((f) => f.last >= target),
        30_000,
        `every subscriber at offset ${target} or beyond ${what} (slowest: ${Math.min(...followers.map((f) => f.last))})`,
      );
    };
    await eventually(() => acked() >= 20, 20_000, "the publishers' first acknowledgements");
    await caughtUp("at the start");

    const disruptions: Array<[string, () => Promise<void>]> = [
      [
        "SIGTERM of a worker",
        async () => {
          process.kill([...workerPids(server).values()][0] as number, "SIGTERM");
          await eventually(() => workerPids(server).size === 2, 20_000, "the worker's replacement");
        },
      ],
      [
        "kill -9 of a worker",
        async () => {
          process.kill([...workerPids(server).values()][1] as number, "SIGKILL");
          await eventually(() => workerPids(server).size === 2, 20_000, "the worker's replacement");
        },
      ],
      [
        "SIGTERM of the whole group",
        async () => {
          await server.kill("SIGTERM");
          await server.restart();
        },
      ],
      [
        "kill -9 of the whole group",
        async () => {
          await killGroup(server);
          await server.restart();
        },
      ],
    ];
    for (const [what, disrupt] of disruptions) {
      const ackedBefore = acked();
      await disrupt();
      await eventually(
        () => acked() >= ackedBefore + 10,
        20_000,
        `sends acknowledged after ${what}`,
      );
      await caughtUp(`after ${what}`);
    }
    await Promise.all(publishers.map((p) => p.stop()));
    const stored = await history(newClient(server), room);
    const last = stored.length;
    expect(stored.map((m) => Number(m.offset))).toEqual(range(1, last));
    // Every acknowledged message is stored, with the id its acknowledgement named.
    const ids = new Map(stored.map((m) => [Number(m.offset), m.id]));
    const acks = publishers.flatMap((p) => [...p.acked.values()]);
    expect(acks.filter((a) => ids.get(a.offset) !== a.id)).toEqual([]);
    await eventually(
      () => followers.every((f) => f.last === last),
      30_000,
      `every subscriber at the last offset ${last}`,
    );
    await Promise.all(followers.map((f) => f.stop()));
    // Every subscriber got 1 … last, each once, in order, across its reconnections.
    expect(followers.flatMap((f) => f.violations)).toEqual([]);
    expect(Math.min(...followers.map((f) => f.connections))).toBeGreaterThanOrEqual(3);
  });
});
