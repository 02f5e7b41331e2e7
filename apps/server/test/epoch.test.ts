// Epochs end to end: a client that resumes after its room's log was reset is told so (code
// failed_precondition and a chat.HistoryReset detail: the current epoch, first and last offsets)
// and never served the new log as if it continued the old one, even once the new log has grown
// past the client's offset. The three ways a log is lost: the memory store restarting, Redis
// losing its data (FLUSHALL), and a Redis Cluster failover without the replica wait that rolls
// offsets back. And what must not change: SQLite and Redis with AOF keep a room's epoch across
// restarts, and clients that know no epoch (the seed's, curl without the field) are served as
// before. The refusal is read with connect-es over the three protocols, with @grpc/grpc-js (its
// grpc-status-details-bin trailer) and with curl (the Connect JSON error's details).
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, fromBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { type HistoryReset as ClientReset, subscribeResumable } from "@switchboard/client";
import {
  type ChatService,
  type HistoryReset,
  HistoryResetSchema,
  type Message,
} from "@switchboard/proto/gen/chat/chat_pb";
import { afterEach, describe, expect, it } from "vitest";
import { REPO_DIR, type ServerProcess, startServer } from "./harness.js";
import { RedisCluster, redisClusterTools } from "./redis-cluster.js";
import { RedisServer } from "./redis-server.js";
import {
  chatClient,
  connectErrorOf,
  decodeStatus,
  grpcJsChatClient,
  Pushable,
  StreamReader,
  TRANSPORT_CASES,
  uniqueRoom,
  within,
} from "./support.js";

const run = promisify(execFile);
const EPOCH = /^[A-Za-z0-9_-]{12}$/;
const fast = { initialMs: 50, maxMs: 400, multiplier: 2, jitter: 0 };

/** One case per protocol: Connect (JSON, HTTP/1.1), gRPC, gRPC-Web (HTTP/1.1). */
const PROTOCOLS = ["connect h1.1 json", "grpc", "grpc-web h1.1 binary"].map(
  (name) => TRANSPORT_CASES.find((tc) => tc.name === name) as (typeof TRANSPORT_CASES)[number],
);

let servers: ServerProcess[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

async function server(options: Parameters<typeof startServer>[0]): Promise<ServerProcess> {
  const started = await startServer(options);
  servers.push(started);
  return started;
}

async function sendAll(client: Client<typeof ChatService>, room: string, contents: string[]) {
  const answers = [];
  for (const content of contents)
    answers.push(await client.sendMessage({ room, user: "w", content }));
  return answers;
}

/** The first message of a stream (the call is cancelled after it), or the stream's error. */
async function firstOf(stream: AsyncIterable<Message>): Promise<Message> {
  for await (const m of stream) return m;
  throw new Error("the stream ended without a message");
}

/** Reads a subscription until it has delivered offset `last`; returns the welcome and the rest. */
async function readUntil(
  client: Client<typeof ChatService>,
  request: { room: string; user: string; sinceOffset?: bigint; epoch?: string },
  last: bigint,
): Promise<{ welcome: Message; messages: Message[] }> {
  const reader = new StreamReader((signal) => client.subscribeMessages(request, { signal }));
  try {
    await reader.waitFor((m) => m.offset === last, 10_000);
    const [welcome, ...messages] = reader.received as [Message, ...Message[]];
    return { welcome, messages };
  } finally {
    reader.cancel();
  }
}

/** The refusal of a position, as connect-es reads it: code, message and the typed detail. */
function refusalOf(err: ConnectError) {
  return {
    code: Code[err.code],
    message: err.rawMessage,
    details: err.findDetails(HistoryResetSchema),
  };
}

/**
 * libs/client's resumable subscription from offset 0 in the background, following a reset from
 * the new log's start: `seen` lists `offset:content` of each stored message and "RESET" where a
 * reset was reported; `until` waits (20 s at most) for a condition, naming what it waited for.
 */
function follow(client: Client<typeof ChatService>, room: string, user: string) {
  const resets: ClientReset[] = [];
  const seen: string[] = [];
  const controller = new AbortController();
  const following = (async () => {
    for await (const m of subscribeResumable(
      client,
      { room, user, sinceOffset: 0n },
      {
        signal: controller.signal,
        backoff: fast,
        onHistoryReset(reset) {
          resets.push(reset);
          seen.push("RESET");
          return "start";
        },
      },
    )) {
      if (m.offset > 0n) seen.push(`${m.offset}:${m.content}`);
    }
  })().catch(() => {});
  const until = async (what: string, check: () => boolean) => {
    const deadline = Date.now() + 20_000;
    while (!check()) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}: ${seen.join(", ")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    controller.abort();
    await following;
  };
  return { resets, seen, until, stop };
}

const position = (room: string, epoch: string, first: bigint, last: bigint): HistoryReset =>
  create(HistoryResetSchema, { room, epoch, firstOffset: first, lastOffset: last });

describe("the memory store restarts: every room log is new", () => {
  it("a resume with the old epoch is refused with where the new log stands, on every protocol, once the new log is longer than the old", async () => {
    const node = await server({ store: "memory" });
    const client = chatClient(node.baseUrl);
    const room = uniqueRoom("memory");
    const sent = await sendAll(client, room, ["old 1", "old 2", "old 3"]);
    const old = sent[0]?.epoch as string;
    expect(old).toMatch(EPOCH);
    expect(sent.map((a) => a.epoch)).toEqual([old, old, old]);
    // The welcome names the log its messages are in (offset 4: zoe's JOIN).
    const before = await readUntil(client, { room, user: "zoe", sinceOffset: 0n }, 4n);
    expect(before.welcome.epoch).toBe(old);
    expect((await client.getHistory({ room, limit: 1 })).epoch).toBe(old);
    expect((await client.listRooms({})).rooms.find((r) => r.name === room)?.epoch).toBe(old);

    await node.kill("SIGKILL");
    await node.restart();
    // The new log grows past offset 4 before the client comes back: 1-6 are other messages.
    const after = await sendAll(client, room, [
      "new 1",
      "new 2",
      "new 3",
      "new 4",
      "new 5",
      "new 6",
    ]);
    const current = after[0]?.epoch as string;
    expect(current).toMatch(EPOCH);
    expect(current).not.toBe(old);

    for (const tc of PROTOCOLS) {
      const c = chatClient(node.baseUrl, tc);
      const err = await connectErrorOf(
        firstOf(c.subscribeMessages({ room, user: "zoe", sinceOffset: 4n, epoch: old })),
      );
      const last = (await c.getHistory({ room, limit: 1 })).lastOffset;
      expect(last, tc.name).toBeGreaterThanOrEqual(6n);
      expect(refusalOf(err), tc.name).toEqual({
        code: "FailedPrecondition",
        message: `history of room ${room} was reset (epoch ${old} is gone): its log is now epoch ${current}, offsets 1 to ${last}`,
        details: [position(room, current, 1n, last)],
      });
      // A page asked for in the old epoch is refused the same way.
      const page = await connectErrorOf(
        c.getHistory({ room, afterOffset: 2n, limit: 10, epoch: old }),
      );
      expect(refusalOf(page), tc.name).toMatchObject({
        code: "FailedPrecondition",
        details: [position(room, current, 1n, last)],
      });
    }

    // In the current epoch, the same offset is served: the new log's messages after 4.
    const resumed = await readUntil(
      client,
      { room, user: "zoe", sinceOffset: 4n, epoch: current },
      6n,
    );
    expect(resumed.welcome.epoch).toBe(current);
    expect(resumed.messages.map((m) => m.content).slice(0, 2)).toEqual(["new 5", "new 6"]);
    // A client that sends no epoch (the seed's, an old one) is served as before: it cannot be told.
    const blind = await readUntil(client, { room, user: "old-client", sinceOffset: 4n }, 6n);
    expect(blind.messages[0]?.content).toBe("new 5");
  }, 60_000);

  it("libs/client's resumable subscription across the restart: the reset event, then the whole new log; none of it skipped", async () => {
    const node = await server({ store: "memory" });
    const client = chatClient(node.baseUrl);
    const room = uniqueRoom("memory-lib");
    await sendAll(client, room, ["old 1", "old 2", "old 3"]);
    const { resets, seen, until, stop } = follow(client, room, "yann");
    try {
      await until("the old log", () => seen.includes("4:yann joined"));
      await node.kill("SIGKILL");
      await node.restart();
      await until("the reset", () => resets.length === 1);
      await sendAll(client, room, ["new 1", "new 2", "new 3", "new 4", "new 5", "new 6"]);
      await until("the new log's last message", () => seen.some((s) => s.endsWith(":new 6")));
      const reset = resets[0] as ClientReset;
      expect(reset.staleEpoch).toMatch(EPOCH);
      expect(reset.staleOffset).toBe(4n);
      expect(reset.epoch).not.toBe(reset.staleEpoch);
      expect(reset.error.code).toBe(Code.FailedPrecondition);
      // Before the reset, the old log; after it, the new log from offset 1, each message once.
      const at = seen.indexOf("RESET");
      expect(seen.slice(0, at)).toEqual(["1:old 1", "2:old 2", "3:old 3", "4:yann joined"]);
      const next = seen.slice(at + 1).map((s) => Number(s.split(":")[0]));
      expect(next).toEqual(next.map((_, i) => i + 1));
      for (let i = 1; i <= 6; i++) {
        expect(seen.filter((s) => s.endsWith(`:new ${i}`))).toHaveLength(1);
      }
    } finally {
      await stop();
    }
  }, 60_000);
});

describe("every answer that carries offsets names the epoch", () => {
  it("SendMessage, UploadMessages, GetHistory, ListRooms, WatchRooms and Chat's echo (the welcome: above)", async () => {
    const node = await server({ store: "sqlite" });
    const client = chatClient(node.baseUrl, {
      protocol: "grpc",
      httpVersion: "2",
      useBinaryFormat: true,
    });
    const room = uniqueRoom("answers");
    const [sent] = await sendAll(client, room, ["one"]);
    const epoch = sent?.epoch as string;
    expect(epoch).toMatch(EPOCH);
    const uploaded = await client.uploadMessages(
      (async function* () {
        yield { room, user: "u", content: "two" };
        yield { room, user: "u", content: "three" };
      })(),
    );
    expect([uploaded.lastOffset, uploaded.epoch]).toEqual([3n, epoch]);
    const page = await client.getHistory({ room, afterOffset: 0n, limit: 10 });
    expect([page.lastOffset, page.epoch]).toEqual([3n, epoch]);
    // Stored messages do not repeat it: their stream's welcome says it once.
    expect(page.messages.map((m) => m.epoch)).toEqual(["", "", ""]);
    expect((await client.listRooms({})).rooms.find((r) => r.name === room)?.epoch).toBe(epoch);
    const watch = new StreamReader((signal) => client.watchRooms({}, { signal }));
    try {
      const snapshot = await watch.waitFor((e) => e.snapshot);
      expect(snapshot.rooms.find((r) => r.name === room)?.epoch).toBe(epoch);
    } finally {
      watch.cancel();
    }
    const requests = new Pushable<{ room: string; user: string; content: string }>();
    const chat = new StreamReader((signal) => client.chat(requests, { signal }));
    try {
      requests.push({ room, user: "c", content: "four" });
      const echo = await chat.waitFor((m) => m.content === "Echo: four");
      expect([echo.offset > 3n, echo.epoch]).toEqual([true, epoch]);
    } finally {
      requests.end();
      chat.cancel();
    }
  }, 30_000);
});

describe("SQLite keeps a room's epoch", () => {
  it("across a kill -9 and a restart: a resume in it goes on, with no reset", async () => {
    const node = await server({ store: "sqlite" });
    const client = chatClient(node.baseUrl);
    const room = uniqueRoom("sqlite");
    const [first] = await sendAll(client, room, ["one", "two"]);
    const epoch = first?.epoch as string;
    expect(epoch).toMatch(EPOCH);
    await node.kill("SIGKILL");
    await node.restart();
    expect((await client.getHistory({ room, limit: 1 })).epoch).toBe(epoch);
    const [third] = await sendAll(client, room, ["three"]);
    expect([third?.offset, third?.epoch]).toEqual([3n, epoch]);
    const resumed = await readUntil(client, { room, user: "u", sinceOffset: 2n, epoch }, 3n);
    expect(resumed.welcome.epoch).toBe(epoch);
    expect(resumed.messages[0]?.content).toBe("three");
  }, 60_000);
});

describe("Redis: FLUSHALL resets every room log; a restart with AOF does not", () => {
  let redis: RedisServer | undefined;
  afterEach(async () => {
    await redis?.close();
    redis = undefined;
  });

  it("keeps the epoch across a Redis restart; after FLUSHALL, a live subscriber is told and follows the new log, and the old epoch is refused", async () => {
    redis = await RedisServer.start();
    const node = await server({ env: { STORE: redis.url } });
    const client = chatClient(node.baseUrl);
    const room = uniqueRoom("flushall");
    const [first] = await sendAll(client, room, ["old 1", "old 2", "old 3"]);
    const old = first?.epoch as string;
    expect(old).toMatch(EPOCH);

    const { resets, seen, until, stop } = follow(client, room, "vera");
    try {
      await until("the old log", () => seen.includes("4:vera joined"));
      // A Redis restart with AOF: the same log, the same epoch; the subscriber resumes in it.
      await redis.stop();
      await redis.start();
      await within(
        (async () => {
          for (;;) {
            try {
              return await client.sendMessage({ room, user: "w", content: "old 5" });
            } catch {
              await new Promise((r) => setTimeout(r, 100));
            }
          }
        })(),
        20_000,
        "a send once Redis is back",
      ).then((answer) => expect([answer.offset, answer.epoch]).toEqual([5n, old]));
      await until("old 5", () => seen.includes("5:old 5"));
      expect(resets).toEqual([]);

      // FLUSHALL: the data is gone; the node's feed stays subscribed and carries the new log.
      await run("redis-cli", ["-p", String(redis.port), "flushall"]);
      const after = await sendAll(
        client,
        room,
        [1, 2, 3, 4, 5, 6, 7].map((i) => `new ${i}`),
      );
      const current = after[0]?.epoch as string;
      expect(current).toMatch(EPOCH);
      expect(current).not.toBe(old);
      // Offsets start again (the subscriber's JOIN may land among them).
      expect(after[0]?.offset).toBe(1n);
      expect(after.every((a, i) => i === 0 || a.offset > (after[i - 1]?.offset ?? 0n))).toBe(true);
      await until("the new log's last message", () => seen.some((s) => s.endsWith(":new 7")));
      expect(resets).toHaveLength(1);
      expect(resets[0]).toMatchObject({ staleEpoch: old, staleOffset: 5n, epoch: current });
      // Nothing of the new log was taken for the old one's offsets 1-5: all of it, once, after.
      const at = seen.indexOf("RESET");
      expect(seen.slice(0, at).every((s) => s.includes("old") || s.includes("joined"))).toBe(true);
      const next = seen.slice(at + 1);
      for (let i = 1; i <= 7; i++)
        expect(next.filter((s) => s.endsWith(`:new ${i}`))).toHaveLength(1);
      const offsets = next.map((s) => Number(s.split(":")[0]));
      expect(offsets).toEqual(offsets.map((_, i) => (offsets[0] as number) + i));

      // A client that held the old position is refused, though the new log is longer now.
      const err = await connectErrorOf(
        firstOf(client.subscribeMessages({ room, user: "x", sinceOffset: 5n, epoch: old })),
      );
      expect(refusalOf(err)).toMatchObject({ code: "FailedPrecondition" });
      expect(err.findDetails(HistoryResetSchema)[0]?.epoch).toBe(current);
    } finally {
      await stop();
    }
  }, 90_000);
});

const missing = await redisClusterTools();

describe.skipIf(missing !== undefined)(
  `a Redis Cluster failover without the replica wait${missing === undefined ? "" : ` (skipped: ${missing})`}`,
  () => {
    let cluster: RedisCluster | undefined;
    afterEach(async () => {
      await Promise.all(servers.map((s) => s.close()));
      servers = [];
      await cluster?.close();
      cluster = undefined;
    });

    it("a node that saw the lost offsets renames the log: its subscriber is told, and the old epoch is refused after the log grows back past them", async () => {
      cluster = await RedisCluster.start();
      const env = { STORE: cluster.url, REDIS_WAIT_REPLICAS: "0", PRESENCE_GRACE_MS: "60000" };
      const [a, b] = [await server({ env }), await server({ env })] as [
        ServerProcess,
        ServerProcess,
      ];
      const viaA = chatClient(a.baseUrl, {
        protocol: "grpc",
        httpVersion: "2",
        useBinaryFormat: true,
      });
      const viaB = chatClient(b.baseUrl);
      const room = uniqueRoom("failover");
      const [first] = await sendAll(viaA, room, ["m1", "m2", "m3"]);
      const old = first?.epoch as string;

      // A subscriber on node a, resuming through it (libs/client).
      const resets: ClientReset[] = [];
      const seen: bigint[] = [];
      const controller = new AbortController();
      const following = (async () => {
        for await (const m of subscribeResumable(
          viaA,
          { room, user: "sub", sinceOffset: 0n },
          {
            signal: controller.signal,
            backoff: fast,
            onHistoryReset(reset) {
              resets.push(reset);
              return "start";
            },
          },
        )) {
          if (m.offset > 0n) seen.push(m.offset);
        }
      })().catch(() => {});

      // The room's replica stops (DEBUG SLEEP) and its link is cut; what node a acknowledges
      // and delivers meanwhile is on the master only, which is then killed.
      const master = await cluster.masterOf(`sb:{${room}}:log`);
      const replica = await cluster.replicaOf(master);
      const frozen = cluster.freeze(replica, 3_000);
      await new Promise((r) => setTimeout(r, 100));
      await cluster.cutReplicas(master);
      const lost = await sendAll(
        viaA,
        room,
        Array.from({ length: 20 }, (_, i) => `lost ${i}`),
      );
      const highest = lost.at(-1)?.offset as bigint;
      expect(lost.every((r) => r.epoch === old)).toBe(true);
      const deadline = Date.now() + 10_000;
      while (seen.at(-1) !== highest && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(seen.at(-1), "the subscriber saw the offsets about to be lost").toBe(highest);
      await cluster.kill(master);
      await frozen.done;
      await cluster.waitForPromotion(`sb:{${room}}:log`, master);

      // Node b never saw the lost offsets: it cannot tell, and reports the log as it is.
      const unaware = await within(
        retry(() => viaB.getHistory({ room, limit: 1 })),
        30_000,
        "node b to read the promoted replica",
      );
      expect(unaware.lastOffset, "the failover lost acknowledged offsets").toBeLessThan(highest);
      // Node a did: its first read (the subscriber's resume, or this one) renames the log.
      const renamed = await within(
        retry(() => viaA.getHistory({ room, limit: 1 })),
        30_000,
        "node a to read the promoted replica",
      );
      expect(renamed.epoch).toMatch(EPOCH);
      expect(renamed.epoch).not.toBe(old);
      expect(renamed.lastOffset).toBeLessThan(highest);

      // The subscriber is told, with the position it had and where the log stands now.
      const told = Date.now() + 20_000;
      while (resets.length === 0 && Date.now() < told) await new Promise((r) => setTimeout(r, 50));
      expect(resets).toHaveLength(1);
      expect(resets[0]).toMatchObject({
        staleEpoch: old,
        staleOffset: highest,
        epoch: renamed.epoch,
      });

      // The log grows back past the lost offsets, through node b: in the new epoch.
      const regrown = await within(
        retry(() =>
          sendAll(
            viaB,
            room,
            Array.from({ length: 30 }, (_, i) => `after ${i}`),
          ),
        ),
        30_000,
        "sends through node b",
      );
      expect(regrown.at(-1)?.offset).toBeGreaterThan(highest);
      expect(new Set(regrown.map((r) => r.epoch))).toEqual(new Set([renamed.epoch]));
      // A client that held the old position is refused on either node, never served offsets
      // that now name other messages.
      for (const client of [viaA, viaB]) {
        const err = await connectErrorOf(
          firstOf(
            client.subscribeMessages({ room, user: "late", sinceOffset: highest, epoch: old }),
          ),
        );
        expect(err.code).toBe(Code.FailedPrecondition);
        expect(err.findDetails(HistoryResetSchema)[0]).toMatchObject({
          epoch: renamed.epoch,
          firstOffset: 1n,
        });
      }
      controller.abort();
      await following;
      console.log(
        `[epoch failover] offsets ${unaware.lastOffset + 1n}–${highest} lost with the master; ` +
          `epoch ${old} → ${renamed.epoch}; the subscriber was told (at offset ${resets[0]?.staleOffset})`,
      );
    }, 150_000);
  },
);

/** Calls `fn` until it succeeds (the cluster answers Unavailable until the replica is promoted). */
async function retry<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Unavailable) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe("clients we did not write", () => {
  /** The calls these tests make on a @grpc/grpc-js client (support.ts grpcJsChatClient). */
  type SeedCalls = grpc.Client & {
    SendMessage(req: object, cb: (err: grpc.ServiceError | null, res?: object) => void): void;
    SubscribeMessages(req: object): grpc.ClientReadableStream<Record<string, unknown>>;
  };
  const grpcJsClient = (port: number, includeDir: string) =>
    grpcJsChatClient<SeedCalls>(port, { includeDir, file: "chat.proto" });

  it("the seed's contract (@grpc/grpc-js): sends and subscribes as before, knowing no epoch", async () => {
    const node = await server({ store: "memory" });
    const client = grpcJsClient(node.port, join(REPO_DIR, "contract", "seed"));
    try {
      const room = uniqueRoom("seed");
      const answer = await new Promise<Record<string, unknown>>((resolve, reject) =>
        client.SendMessage({ room, user: "gopher", content: "hello" }, (err, res) =>
          err === null ? resolve(res as Record<string, unknown>) : reject(err),
        ),
      );
      expect(Object.keys(answer).sort()).toEqual(["message_id", "timestamp"]);
      const stream = client.SubscribeMessages({ room, user: "gopher" });
      const received = await within(
        new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
          const items: Array<Record<string, unknown>> = [];
          stream.on("data", (m: Record<string, unknown>) => {
            items.push(m);
            if (items.length === 2) resolve(items);
          });
          stream.on("error", reject);
        }),
        5_000,
        "the seed client's welcome and JOIN",
      );
      stream.cancel();
      stream.on("error", () => {});
      expect(received[0]).toMatchObject({ id: "system", type: "SYSTEM", room });
      expect(received[1]).toMatchObject({ type: "JOIN", user: "gopher" });
      expect("epoch" in (received[0] as object)).toBe(false);
    } finally {
      client.close();
    }
  });

  it("the refusal from @grpc/grpc-js: code 9 and the HistoryReset in grpc-status-details-bin", async () => {
    const node = await server({ store: "memory" });
    const room = uniqueRoom("grpcjs");
    const [sent] = await sendAll(chatClient(node.baseUrl), room, ["one", "two"]);
    // The repository's contract from proto/ (chat/chat.proto imports buf/validate/validate.proto).
    const client = grpcJsChatClient<SeedCalls>(node.port);
    try {
      const stream = client.SubscribeMessages({
        room,
        user: "g",
        since_offset: "1",
        epoch: "NotTheEpoch1",
      });
      const err = await within(
        new Promise<grpc.ServiceError>((resolve) => {
          stream.on("data", () => {});
          stream.on("error", resolve);
        }),
        5_000,
        "grpc-js's refusal",
      );
      expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(err.details).toBe(
        `history of room ${room} was reset (epoch NotTheEpoch1 is gone): its log is now epoch ${sent?.epoch}, offsets 1 to 3`,
      );
      const [bin] = err.metadata.get("grpc-status-details-bin") as Buffer[];
      const status = decodeStatus(new Uint8Array(bin as Buffer));
      expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(status.details.map((d) => d.typeUrl)).toEqual([
        "type.googleapis.com/chat.HistoryReset",
      ]);
      expect(fromBinary(HistoryResetSchema, status.details[0]?.value as Uint8Array)).toEqual(
        position(room, sent?.epoch as string, 1n, 3n),
      );
    } finally {
      client.close();
    }
  });

  it("curl: the Connect JSON error carries the detail; without the field, nothing changes", async () => {
    const node = await server({ store: "memory" });
    const room = uniqueRoom("curl");
    const [sent] = await sendAll(chatClient(node.baseUrl), room, ["one"]);
    const curl = async (body: object) =>
      (
        await run("curl", [
          ...["-sS", "-X", "POST", `${node.baseUrl}/chat.ChatService/GetHistory`],
          ...["-H", "Content-Type: application/json", "-d", JSON.stringify(body)],
        ])
      ).stdout;
    const refused = JSON.parse(await curl({ room, afterOffset: "0", epoch: "NotTheEpoch1" })) as {
      code: string;
      message: string;
      details: Array<{ type: string; value: string }>;
    };
    expect(refused.code).toBe("failed_precondition");
    expect(refused.message).toBe(
      `history of room ${room} was reset (epoch NotTheEpoch1 is gone): its log is now epoch ${sent?.epoch}, offsets 1 to 1`,
    );
    expect(refused.details.map((d) => d.type)).toEqual(["chat.HistoryReset"]);
    expect(
      fromBinary(HistoryResetSchema, Buffer.from(refused.details[0]?.value as string, "base64")),
    ).toEqual(position(room, sent?.epoch as string, 1n, 1n));
    // Without the field (the README's examples): the page, now naming its epoch.
    const page = JSON.parse(await curl({ room, afterOffset: "0" })) as Record<string, unknown>;
    expect(page).toMatchObject({ lastOffset: "1", epoch: sent?.epoch });
  });
});
