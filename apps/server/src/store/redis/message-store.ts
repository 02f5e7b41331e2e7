import { newEpoch } from "../epoch.js";
import { kindOfCode, MESSAGE_KIND_CODES } from "../message-kind-codes.js";
import type {
  AppendResult,
  HistoryPage,
  HistoryQuery,
  JoinedMember,
  LiveMessage,
  MessageDraft,
  MessageStore,
  RoomStats,
  StoredMessage,
} from "../message-store.js";
import type { Entry, RedisConnection, StoreClient } from "./connection.js";
import type { LogRead, RedisFeeds } from "./feeds.js";
import {
  awayKey,
  epochBaseKey,
  epochKey,
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
import { SeenOffsets } from "./seen-offsets.js";

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
  /** The log's epoch: on published and returned messages, not in the stream. */
  e?: string;
  /** The append's W3C traceparent (MessageDraft.trace): on published messages only, when traced. */
  tp?: string;
}

/**
 * Parses a message as the append script stored, published or returned it; `epoch` is "" for a
 * stream entry (entries do not repeat their log's epoch).
 */
export function decode(json: string): LiveMessage {
  const m = JSON.parse(json) as Encoded;
  const message: LiveMessage = {
    epoch: m.e ?? "",
    offset: m.o,
    id: m.id,
    room: m.r,
    user: m.u,
    content: m.c,
    kind: kindOfCode(m.t),
    timestampMs: Number(m.ts),
    clientMessageId: m.k,
  };
  if (m.tp !== undefined) message.trace = m.tp;
  return message;
}

const entryToMessage = (entry: Entry): StoredMessage => decode(entry.message.m as string);

/** A stream entry as a script returns it: `[id, [field, value, …]]`. */
type RawEntry = [string, string[]];
const rawEntryToMessage = ([, fields]: RawEntry): StoredMessage =>
  decode(fields[fields.indexOf("m") + 1] as string);

/**
 * Reads a page of `room`'s history with its log's epoch, last offset and epoch base, in one
 * atomic step (lua/read.lua). `range` is `["XRANGE" | "XREVRANGE", start, end]` as that command
 * takes them; `seen` is what this node saw of the log (SeenOffsets.check: the script gives a log
 * that is behind it a new epoch), `["", "0"]` for no check.
 * @throws StoreUnavailableError; the signal's reason.
 */
export async function readLog(
  run: RunScript,
  room: string,
  range: [string, string, string],
  count: number,
  seen: [epoch: string, offset: string] = ["", "0"],
  signal?: AbortSignal,
): Promise<LogRead> {
  const [epoch, last, entries, base] = (await run(
    "read",
    [seqKey(room), logKey(room), epochKey(room), epochBaseKey(room)],
    [...range, String(count), newEpoch(), ...seen],
    [],
    signal,
  )) as [string, number, RawEntry[] | null, number];
  return {
    epoch,
    lastOffset: Number(last),
    base: Number(base) < 0 ? undefined : Number(base),
    // COUNT 0 answers a null array.
    messages: (entries ?? []).map(rawEntryToMessage),
  };
}

/**
 * The Redis message store: one Redis Stream per room holds the history, with each message's
 * offset as its entry ID; the append script (lua/append.lua) assigns offsets and appends
 * atomically and publishes the message to the room's sharded pub/sub channel, which is the
 * room's change feed on every node ({@link RedisFeeds}). Every key of a room is in the room's
 * slot; the cross-room sets (rooms, rooms with joined users) are updated after the script with
 * single-key commands.
 *
 * Each room's epoch is a key of its slot, created by the append script with the log's first
 * message; this node's {@link SeenOffsets} lets the append and read scripts notice a log whose
 * offsets went back, and give it a new epoch.
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
  const seen = new SeenOffsets();

  return {
    async append(drafts: readonly MessageDraft[], signal?: AbortSignal): Promise<AppendResult[]> {
      return Promise.all(
        drafts.map(async (d) => {
          // Only a LEAVE asks whether the user is still subscribed on a live node.
          const dead =
            d.kind === "leave" ? await call((c) => deadNodesOf(c, d.room, node), signal) : [];
          await replicaWait?.check(d.room, signal);
          const [seenEpoch, seenOffset] = seen.check(d.room);
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
                epochKey(d.room),
                epochBaseKey(d.room),
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
                newEpoch(),
                seenEpoch,
                seenOffset,
                // The append's trace context, only when traced: no byte more when tracing is off.
                ...(d.trace === undefined ? [] : [d.trace]),
              ],
              dead,
              signal,
            ),
          );
          const status = reply[0];
          if (status === "2") {
            seen.current(d.room, reply.slice(1), 0);
            return { message: { ...d, offset: 0 }, duplicate: true, epoch: reply.slice(1) };
          }
          const message = decode(reply.slice(1));
          // Acknowledged: the script's reply, or with a replica wait the wait (below), which a
          // stored message may never pass; one lost in a failover then renames no log.
          if (replicaWait === undefined) seen.current(d.room, message.epoch, message.offset);
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
            seen.current(d.room, message.epoch, message.offset);
            // The script's reply, with the log's epoch ("e"): what it would have published.
            // Not awaited: the answer does not wait for the commands queued before it on this
            // connection (other sends' WAITs). A failed publish means the master is gone: the
            // room's feeds break with it and their subscribers resume from history.
            connection
              .publish(feedChannel(d.room), reply.slice(1))
              .catch((err: unknown) => onError(err, `announcing a message of room ${d.room}`));
          }
          return { message, duplicate: status === "1", epoch: message.epoch };
        }),
      );
    },

    async read(query: HistoryQuery, signal?: AbortSignal): Promise<HistoryPage> {
      const { room, afterOffset, beforeOffset, limit } = query;
      // One script reads the epoch, the last offset and the page at one instant (lua/read.lua).
      const range: [string, string, string] =
        afterOffset !== undefined
          ? ["XRANGE", `(${afterOffset}-0`, beforeOffset === undefined ? "+" : `(${beforeOffset}-0`]
          : ["XREVRANGE", beforeOffset === undefined ? "+" : `(${beforeOffset}-0`, "-"];
      const log = await readLog(run, room, range, limit + 1, seen.check(room), signal);
      seen.current(room, log.epoch, log.lastOffset);
      const page = log.messages.slice(0, limit);
      return {
        messages: afterOffset !== undefined ? page : page.reverse(),
        lastOffset: log.lastOffset,
        hasMore: log.messages.length > limit,
        epoch: log.epoch,
      };
    },

    async rooms(): Promise<RoomStats[]> {
      return call(async () => {
        const names = (await client.sMembers(ROOMS)).sort();
        return Promise.all(
          names.map(async (name) => ({
            name,
            lastOffset: await lastOffsetOf(name),
            messageCount: await client.xLen(logKey(name)),
            epoch: (await client.get(epochKey(name))) ?? "",
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
      // What the feed delivers is what this node's subscribers saw (SeenOffsets).
      return feeds.watch(room, {
        message(message) {
          seen.delivered(room, message.epoch, message.offset);
          feed.message(message);
        },
        lost: (err) => feed.lost(err),
      });
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
