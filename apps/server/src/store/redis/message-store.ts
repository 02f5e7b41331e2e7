import { kindOfCode, MESSAGE_KIND_CODES } from "../message-kind-codes.js";
import type {
  AppendResult,
  HistoryPage,
  HistoryQuery,
  JoinedMember,
  MessageDraft,
  MessageStore,
  RoomStats,
  StoredMessage,
} from "../message-store.js";
import type { Entry, RedisConnection, StoreClient } from "./connection.js";
import type { RedisFeeds } from "./feeds.js";
import {
  awayKey,
  feedChannel,
  idemKey,
  JOINED_RECORDED,
  JOINED_ROOMS,
  joinedKey,
  logKey,
  presenceKey,
  ROOMS,
  seqKey,
} from "./keys.js";
import { deadNodesOf, removeRoom } from "./presence.js";
import { ReplicaWait } from "./replica-wait.js";
import type { RunScript } from "./scripts.js";

/** Settings of the Redis message store (from the configuration). */
export interface RedisStoreOptions {
  /** Entries kept per room (XADD MAXLEN ~); 0 keeps every entry. */
  historyMaxLength: number;
  /** Entries older than this are trimmed, s; 0 keeps them. */
  historyMaxAgeS: number;
  /** How long an idempotency key is remembered, s. */
  idempotencyTtlS: number;
  /** A LEAVE is stored only once its user has been away this long, ms (PRESENCE_GRACE_MS). */
  presenceGraceMs?: number | undefined;
  /**
   * Replicas that must acknowledge an append before it is acknowledged (WAIT), 0: none
   * (REDIS_WAIT_REPLICAS).
   */
  waitReplicas?: number | undefined;
  /** How long an append waits for them, ms (REDIS_WAIT_TIMEOUT_MS). */
  waitTimeoutMs?: number | undefined;
}

/** A message as the append script stores it (JSON, in the stream entry's `m` field). */
interface Encoded {
  o: number;
  id: string;
  r: string;
  u: string;
  c: string;
  /** The kind's code (message-kind-codes.ts). */
  t: number;
  ts: string;
  k: string;
}

/** Parses a message as the append script stored and published it. */
export function decode(json: string): StoredMessage {
  const m = JSON.parse(json) as Encoded;
  return {
    offset: m.o,
    id: m.id,
    room: m.r,
    user: m.u,
    content: m.c,
    kind: kindOfCode(m.t),
    timestampMs: Number(m.ts),
    clientMessageId: m.k,
  };
}

const entryToMessage = (entry: Entry): StoredMessage => decode(entry.message.m as string);

/**
 * The Redis message store: one Redis Stream per room holds the history, with each message's
 * offset as its entry ID; the append script (lua/append.lua) assigns offsets and appends
 * atomically and publishes the message to the room's sharded pub/sub channel, which is the
 * room's change feed on every node ({@link RedisFeeds}). Every key of a room is in the room's
 * slot; the cross-room sets (rooms, rooms with joined users) are updated after the script with
 * single-key commands.
 *
 * With `waitReplicas` > 0, an append is acknowledged only once that many replicas have it
 * (`WAIT` on the master that ran the script, replica-wait.ts), and only then announced on the
 * room's feed: the script publishes nothing, this node publishes the message after the wait, so
 * a subscriber never sees live a message that could still be lost in a failover. Fewer replicas
 * within `waitTimeoutMs` fail the append with StoreUnavailableError (Connect code Unavailable);
 * the message is stored on the master and may survive, unannounced: a retry with the same
 * clientMessageId returns it (and announces it, once acknowledged) rather than storing it twice.
 * A master known to have fewer replicas in sync than `waitReplicas` is refused at once, before
 * anything is stored. The feed puts announcements from several nodes back in offset order
 * (feeds.ts).
 */
export function createRedisMessageStore(
  connection: RedisConnection,
  run: RunScript,
  feeds: RedisFeeds,
  options: RedisStoreOptions,
  /** This node's name (Heartbeat.node): its own subscriptions are alive. */
  node: string,
  /** Background failures (a message acknowledged but not announced on its feed). */
  onError: (err: unknown, context: string) => void = () => {},
): MessageStore & { trimByAge(): Promise<void> } {
  const { client, call } = connection;
  const lastOffsetOf = async (room: string): Promise<number> =>
    Number((await client.get(seqKey(room))) ?? 0);
  // Rooms this process has added to ROOMS: SADD once per room and process (idempotent: a crash
  // between the script and the SADD is repaired by the room's next write from a new process).
  const listed = new Set<string>();
  const replicaWait =
    (options.waitReplicas ?? 0) > 0
      ? new ReplicaWait(connection, options.waitReplicas ?? 0, options.waitTimeoutMs ?? 1_000)
      : undefined;

  return {
    async append(drafts: readonly MessageDraft[], signal?: AbortSignal): Promise<AppendResult[]> {
      return Promise.all(
        drafts.map(async (d) => {
          // Only a LEAVE asks whether the user is still subscribed on a live node.
          const dead =
            d.kind === "leave" ? await call((c) => deadNodesOf(c, d.room, node), signal) : [];
          await replicaWait?.check(d.room, signal);
          const reply = String(
            await run(
              "append",
              [
                seqKey(d.room),
                logKey(d.room),
                idemKey(d.room, d.clientMessageId),
                joinedKey(d.room),
                presenceKey(d.room),
                awayKey(d.room),
              ],
              [
                d.room,
                d.id,
                d.user,
                d.content,
                d.kind,
                String(MESSAGE_KIND_CODES[d.kind]),
                String(d.timestampMs),
                d.clientMessageId,
                String(options.idempotencyTtlS),
                String(options.historyMaxLength),
                // With a replica wait, the message is announced after it (below).
                replicaWait === undefined ? feedChannel(d.room) : "",
                String(options.presenceGraceMs ?? 0),
              ],
              dead,
              signal,
            ),
          );
          if (reply === "2") return { message: { ...d, offset: 0 }, duplicate: true };
          const status = reply[0];
          // Stored. The cross-room sets are brought up to date without the caller's signal: a
          // call its deadline rejects must not have been written, and this one was.
          await call(async (c) => {
            if (!listed.has(d.room)) {
              await c.sAdd(ROOMS, d.room);
              listed.add(d.room);
            }
            if (status === "0" && d.kind === "join") await c.sAdd(JOINED_ROOMS, d.room);
            if (status === "3") {
              await removeRoom(
                c,
                JOINED_ROOMS,
                d.room,
                async () => (await c.hLen(joinedKey(d.room))) > 0,
              );
            }
          });
          if (replicaWait !== undefined) {
            // A repeated key's original is waited for and announced too: its own wait may have
            // failed, and then nobody has seen it live. The WAIT covers it even when another node
            // wrote it: Redis (7.0) waits for the master's replication offset as of this
            // connection's last command, reads included, not only for the connection's writes.
            await replicaWait.wait(d.room, signal);
            const json = reply.slice(1);
            // Not awaited: the answer does not wait for the commands queued before it on this
            // connection (other sends' WAITs). A failed publish means the master is gone: the
            // room's feeds break with it and their subscribers resume from history.
            connection
              .publish(feedChannel(d.room), json)
              .catch((err: unknown) => onError(err, `announcing a message of room ${d.room}`));
          }
          return { message: decode(reply.slice(1)), duplicate: status === "1" };
        }),
      );
    },

    async read(query: HistoryQuery, signal?: AbortSignal): Promise<HistoryPage> {
      return call(async (client) => {
        const { room, afterOffset, beforeOffset, limit } = query;
        const last = Number((await client.get(seqKey(room))) ?? 0);
        if (afterOffset !== undefined) {
          const end = beforeOffset === undefined ? "+" : `(${beforeOffset}-0`;
          const entries = await client.xRange(logKey(room), `(${afterOffset}-0`, end, {
            COUNT: limit + 1,
          });
          return {
            messages: entries.slice(0, limit).map(entryToMessage),
            lastOffset: last,
            hasMore: entries.length > limit,
          };
        }
        const start = beforeOffset === undefined ? "+" : `(${beforeOffset}-0`;
        const entries = await client.xRevRange(logKey(room), start, "-", { COUNT: limit + 1 });
        return {
          messages: entries.slice(0, limit).reverse().map(entryToMessage),
          lastOffset: last,
          hasMore: entries.length > limit,
        };
      }, signal);
    },

    async rooms(): Promise<RoomStats[]> {
      return call(async () => {
        const names = (await client.sMembers(ROOMS)).sort();
        return Promise.all(
          names.map(async (name) => ({
            name,
            lastOffset: await lastOffsetOf(name),
            messageCount: await client.xLen(logKey(name)),
          })),
        );
      });
    },

    async joined(room?: string): Promise<JoinedMember[]> {
      return call(async (client) => {
        const names = room === undefined ? await client.sMembers(JOINED_ROOMS) : [room];
        const out: JoinedMember[] = [];
        for (const name of names) {
          for (const [user, ts] of Object.entries(await client.hGetAll(joinedKey(name)))) {
            out.push({ room: name, user, joinedAtMs: Number(ts) });
          }
        }
        return out;
      });
    },

    watch(room, feed) {
      return feeds.watch(room, feed);
    },

    async ping() {
      await connection.ping();
    },

    close() {
      return feeds.close();
    },

    /** XTRIM MINID: drops each room's entries older than historyMaxAgeS. */
    async trimByAge() {
      const cutoff = Date.now() - options.historyMaxAgeS * 1000;
      for (const room of await client.sMembers(ROOMS)) {
        // Entries are in offset order, which is time order: find the first young enough.
        let from = "-";
        for (;;) {
          const page = await client.xRange(logKey(room), from, "+", { COUNT: 200 });
          const young = page.find((e) => entryToMessage(e).timestampMs >= cutoff);
          if (young !== undefined) {
            await client.xTrim(logKey(room), "MINID", young.id);
            break;
          }
          if (page.length < 200) {
            // Every entry is too old: keep none.
            const lastEntry = page.at(-1);
            if (lastEntry !== undefined) {
              await client.xTrim(
                logKey(room),
                "MINID",
                `${Number(lastEntry.id.split("-")[0]) + 1}-0`,
              );
            }
            break;
          }
          from = `(${(page.at(-1) as { id: string }).id}`;
        }
      }
    },
  };
}

/**
 * Once per Redis database, for history written before the append script recorded who is joined:
 * each user whose latest JOIN or LEAVE in a room is a JOIN is recorded as joined (their LEAVE is
 * then owed, a grace after no node has them subscribed). Reads every room's stream once.
 */
export async function recordJoinedMembers(client: StoreClient): Promise<void> {
  if ((await client.set(JOINED_RECORDED, String(Date.now()), { NX: true })) === null) return;
  for (const room of await client.sMembers(ROOMS)) {
    const latest = new Map<string, { kind: StoredMessage["kind"]; ts: number }>();
    let from = "-";
    for (;;) {
      const page = await client.xRange(logKey(room), from, "+", { COUNT: 1000 });
      for (const entry of page) {
        const m = entryToMessage(entry);
        if (m.kind !== "chat") latest.set(m.user, { kind: m.kind, ts: m.timestampMs });
      }
      if (page.length < 1000) break;
      from = `(${(page.at(-1) as { id: string }).id}`;
    }
    for (const [user, { kind, ts }] of latest) {
      if (kind !== "join") continue;
      await client.hSetNX(joinedKey(room), user, String(ts));
      await client.sAdd(JOINED_ROOMS, room);
    }
  }
}
