// Switchboard nodes on a real Redis Cluster (3 masters, 3 replicas, the run's shared one;
// redis-cluster.ts): fan-out across nodes in rooms whose slots are on different masters, and
// publishers racing to one room through every node with no gap and no duplicate offset, without
// the replica wait (the append script announces each message) and with it (each node announces
// its own messages after their wait, so announcements cross: subscribers still get every offset
// once, in order). (kill -9 of a Switchboard node on the cluster: presence.test.ts; a master
// killed under load, and a manual failover: redis-cluster-failover.test.ts.)
import type { Client } from "@connectrpc/connect";
import type { ChatService, Message } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { type RedisCluster, redisClusterTools, sharedRedisCluster } from "./redis-cluster.js";
import { chatClient, StreamReader, uniqueRoom } from "./support.js";

const missing = await redisClusterTools();
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Every stored offset of `room`, oldest first. */
async function historyOffsets(client: Client<typeof ChatService>, room: string): Promise<number[]> {
  const offsets: number[] = [];
  let after = 0n;
  for (;;) {
    const page = await client.getHistory({ room, afterOffset: after, limit: 500 });
    for (const m of page.messages) offsets.push(Number(m.offset));
    if (!page.hasMore) return offsets;
    after = page.messages.at(-1)?.offset ?? after;
  }
}

describe.skipIf(missing !== undefined)(
  `three nodes on a Redis Cluster${missing === undefined ? "" : ` (skipped: ${missing})`}`,
  () => {
    let cluster: RedisCluster;
    let nodes: ServerProcess[];
    let clients: Array<Client<typeof ChatService>>;

    beforeAll(async () => {
      cluster = await sharedRedisCluster();
      nodes = await Promise.all(
        [0, 1, 2].map(() => startServer({ env: { STORE: cluster.url, PRESENCE_GRACE_MS: "200" } })),
      );
      clients = nodes.map((n) => chatClient(n.baseUrl));
    }, 60_000);
    afterAll(async () => {
      await Promise.all((nodes ?? []).map((n) => n.close()));
      await cluster?.close();
    });

    test("fan-out across nodes in three rooms on three different masters, in order", async () => {
      // Rooms whose keys (and feeds) hash to three different masters.
      const rooms = new Map<number, string>();
      while (rooms.size < 3) {
        const room = uniqueRoom("shard");
        const master = await cluster.masterOf(`sb:{${room}}:log`);
        if (!rooms.has(master)) rooms.set(master, room);
      }
      expect(new Set(rooms.keys()).size).toBe(3);
      await Promise.all(
        [...rooms.values()].map(async (room, r) => {
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
          const sent: bigint[] = [];
          for (let i = 0; i < 20; i++) {
            const { offset } = await (clients[0] as Client<typeof ChatService>).sendMessage({
              room,
              user: "alice",
              content: `r${r}-m${i}`,
            });
            sent.push(offset);
          }
          for (const reader of readers) {
            await reader.waitFor((m) => m.content === `r${r}-m19`);
            const chats = reader.received.filter((m) => m.user === "alice");
            expect(chats.map((m) => m.content)).toEqual(range(0, 19).map((i) => `r${r}-m${i}`));
            expect(chats.map((m) => m.offset)).toEqual(sent);
            reader.cancel();
          }
        }),
      );
      // Every node lists the three rooms (the room set lives in its own slot).
      const { rooms: listed } = await (clients[2] as Client<typeof ChatService>).listRooms({});
      for (const room of rooms.values()) {
        expect(listed.find((r) => r.name === room)?.lastOffset).toBeGreaterThanOrEqual(20n);
      }
    });

    test("three nodes publishing to one room at once: offsets with no gap and no duplicate", async () => {
      await race(clients, uniqueRoom("race"));
    });

    describe("REDIS_WAIT_REPLICAS=1", () => {
      let waiting: ServerProcess[] = [];
      beforeAll(async () => {
        waiting = await Promise.all(
          [0, 1, 2].map(() =>
            startServer({
              env: { STORE: cluster.url, REDIS_WAIT_REPLICAS: "1", PRESENCE_GRACE_MS: "200" },
            }),
          ),
        );
      }, 60_000);
      afterAll(async () => {
        await Promise.all(waiting.map((n) => n.close()));
      });

      test("three nodes publishing to one room at once, each announcing after its wait: every offset once, in order", async () => {
        await race(
          waiting.map((n) => chatClient(n.baseUrl)),
          uniqueRoom("race-wait"),
        );
      });
    });
  },
);

/**
 * 300 sends to `room` at once, spread over the clients' nodes; a subscriber on the second node
 * gets every one, in offset order, once, and the offsets have no gap.
 */
async function race(clients: Array<Client<typeof ChatService>>, room: string): Promise<void> {
  const reader = new StreamReader<Message>((signal) =>
    (clients[1] as Client<typeof ChatService>).subscribeMessages(
      { room, user: "watcher" },
      { signal },
    ),
  );
  await reader.waitFor((m) => m.id === "system");
  const sends = range(0, 299).map((i) =>
    (clients[i % 3] as Client<typeof ChatService>).sendMessage({
      room,
      user: "racer",
      content: `r${i}`,
    }),
  );
  const offsets = (await Promise.all(sends)).map((r) => Number(r.offset));
  const first = Math.min(...offsets);
  expect([...offsets].sort((a, b) => a - b)).toEqual(range(first, first + 299));
  const history = await historyOffsets(clients[2] as Client<typeof ChatService>, room);
  expect(history).toEqual(range(1, history.length));
  for (const offset of offsets) expect(history).toContain(offset);
  // The subscriber on another node saw them all, in offset order, once each.
  await reader.waitFor(
    () => reader.received.filter((m) => m.user === "racer").length === 300,
    10_000,
  );
  const seen = reader.received.filter((m) => m.user === "racer").map((m) => Number(m.offset));
  expect(seen).toEqual([...offsets].sort((a, b) => a - b));
  reader.cancel();
}
