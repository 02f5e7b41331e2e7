// Three Switchboard nodes on a real Redis Cluster (3 masters, 3 replicas; redis-cluster.ts):
// fan-out across nodes in rooms whose slots are on different masters, and publishers racing to
// one room through every node with no gap and no duplicate offset, and a manual failover of a
// room's master under its subscribers (the server drops their sharded subscriptions: they
// resume at the new master with no gap). (kill -9 of a Switchboard node
// on the cluster: presence.test.ts; a master killed under load: redis-cluster-failover.test.ts.)
import { type Client, Code } from "@connectrpc/connect";
import type { ChatService, Message } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { RedisCluster, redisClusterTools } from "./redis-cluster.js";
import { chatClient, StreamReader, uniqueRoom, within } from "./support.js";

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
      cluster = await RedisCluster.start();
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
      const room = uniqueRoom("race");
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
    });

    test("a manual failover of a room's master: subscribers resume at the new master with no gap", async () => {
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
            await new Promise((r) => setTimeout(r, 100));
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
