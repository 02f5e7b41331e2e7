import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { MessageType } from "@switchboard/proto/gen/chat/chat_pb";
import { createClient, type RedisClientType } from "redis";
import type { Backend } from "./backend.js";
import {
  type AppendResult,
  type HistoryPage,
  type HistoryQuery,
  type JoinedMember,
  type MessageDraft,
  type MessageStore,
  type RoomFeed,
  type RoomStats,
  type StoredMessage,
  StoreUnavailableError,
} from "./message-store.js";
import type { MemberInfo, Presence } from "./presence.js";

/** Settings of the Redis backend (from the configuration). */
export interface RedisOptions {
  /** `redis://host:port/db` (also `rediss://` for TLS). */
  url: string;
  /** Entries kept per room (XADD MAXLEN ~); 0 keeps every entry. */
  historyMaxLength: number;
  /** Entries older than this are trimmed, s; 0 keeps them. */
  historyMaxAgeS: number;
  /** How long an idempotency key is remembered, s. */
  idempotencyTtlS: number;
  /** A LEAVE is stored only once its user has been away this long, ms (PRESENCE_GRACE_MS). */
  presenceGraceMs?: number | undefined;
  /** Called with background errors (connection trouble, failed sweeps). */
  onError: (err: unknown, context: string) => void;
}

// Keys. A room's keys share the hash tag {room} so that they live in one slot.
const seqKey = (room: string) => `sb:{${room}}:seq`;
const logKey = (room: string) => `sb:{${room}}:log`;
const idemKey = (room: string, key: string) => `sb:{${room}}:idem:${key}`;
const presenceKey = (room: string) => `sb:{${room}}:presence`;
/** user → the timestamp of their stored JOIN, while the history lists them as joined. */
const joinedKey = (room: string) => `sb:{${room}}:joined`;
/** user → since when (Redis TIME, ms) a joined user has had no subscription on a live node. */
const awayKey = (room: string) => `sb:{${room}}:away`;
const feedChannel = (room: string) => `sb:{${room}}:feed`;
const ROOMS = "sb:rooms";
const PRESENCE_ROOMS = "sb:presence-rooms";
/** Rooms whose history lists someone as joined. */
const JOINED_ROOMS = "sb:joined-rooms";
const nodeKey = (node: string) => `sb:node:${node}`;

/** A node is alive while its key exists: refreshed every NODE_HEARTBEAT_MS, expires after NODE_TTL_S. */
const NODE_HEARTBEAT_MS = 5_000;
const NODE_TTL_S = 15;
/** How often dead nodes' presence and over-age history are swept, ms. */
const SWEEP_MS = 30_000;
/** Separates node and user in a presence field (a user name cannot contain control characters). */
const SEP = "\u001f";

// Redis's clock in ms (TIME), so that every node measures absences on one clock.
const NOW_MS = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;
// Whether `user` has a subscription to the room (presence hash `key`) on a node that is alive.
const LIVE = `
local function live(key, user)
  for _, f in ipairs(redis.call('HKEYS', key)) do
    local s = string.find(f, '${SEP}', 1, true)
    if string.sub(f, s + 1) == user and redis.call('EXISTS', 'sb:node:' .. string.sub(f, 1, s - 1)) == 1 then
      return true
    end
  end
  return false
end
`;

// Appends one message atomically: idempotency check, next offset (INCR), XADD with the offset as
// the entry ID (`<offset>-0`, so history reads by offset are range reads), the room in the room
// set, and PUBLISH to the room's feed. Redis runs a script alone, so offsets are gap-free and
// the feed sees them in order even when several nodes append to one room at once.
// JOIN and LEAVE keep the room's joined hash, in the same script: a JOIN for a joined user is not
// stored, nor a LEAVE for a user who is not joined, still has a subscription on a live node, or
// has been away less than the grace (ARGV[11], ms); so each LEAVE is stored once, whichever
// nodes try.
// Returns "0<json>" for a new message, "1<json>" for the original of a repeated key, "2" for a
// JOIN or LEAVE not stored.
const APPEND = `${NOW_MS}${LIVE}
local cmid = ARGV[7]
if cmid ~= '' then
  local prev = redis.call('GET', KEYS[4])
  if prev then return '1' .. prev end
end
local kind = tonumber(ARGV[5])
local user = ARGV[3]
if kind == ${MessageType.JOIN} then
  if redis.call('HEXISTS', KEYS[5], user) == 1 then return '2' end
elseif kind == ${MessageType.LEAVE} then
  if redis.call('HEXISTS', KEYS[5], user) == 0 or live(KEYS[6], user) then return '2' end
  local away = redis.call('HGET', KEYS[7], user)
  if not away or now_ms() - tonumber(away) < tonumber(ARGV[11]) then return '2' end
end
local offset = redis.call('INCR', KEYS[1])
local msg = cjson.encode({o = offset, id = ARGV[2], r = ARGV[1], u = ARGV[3], c = ARGV[4],
  t = tonumber(ARGV[5]), ts = ARGV[6], k = cmid})
local maxlen = tonumber(ARGV[9])
if maxlen > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, offset .. '-0', 'm', msg)
else
  redis.call('XADD', KEYS[2], offset .. '-0', 'm', msg)
end
if cmid ~= '' then redis.call('SET', KEYS[4], msg, 'EX', ARGV[8]) end
redis.call('SADD', KEYS[3], ARGV[1])
if kind == ${MessageType.JOIN} then
  redis.call('HSET', KEYS[5], user, ARGV[6])
  redis.call('SADD', KEYS[8], ARGV[1])
elseif kind == ${MessageType.LEAVE} then
  redis.call('HDEL', KEYS[5], user)
  redis.call('HDEL', KEYS[7], user)
  if redis.call('HLEN', KEYS[5]) == 0 then redis.call('SREM', KEYS[8], ARGV[1]) end
end
redis.call('PUBLISH', ARGV[10], msg)
return '0' .. msg
`;

// One more subscription of user ARGV[2] on node ARGV[1] to the room (KEYS[1] presence hash).
// Returns 1 when no live node had a subscription of that user before (publish JOIN). The user is
// no longer away (KEYS[3]).
const PRESENCE_JOIN = `
local field = ARGV[1] .. '${SEP}' .. ARGV[2]
local cur = redis.call('HGET', KEYS[1], field)
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('HDEL', KEYS[3], ARGV[2])
if cur then
  local sep = string.find(cur, ':', 1, true)
  redis.call('HSET', KEYS[1], field, (tonumber(string.sub(cur, 1, sep - 1)) + 1) .. string.sub(cur, sep))
  return 0
end
redis.call('HSET', KEYS[1], field, '1:' .. ARGV[3])
local all = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(all) do
  local sep = string.find(f, '${SEP}', 1, true)
  local node, user = string.sub(f, 1, sep - 1), string.sub(f, sep + 1)
  if user == ARGV[2] and node ~= ARGV[1] and redis.call('EXISTS', 'sb:node:' .. node) == 1 then
    return 0
  end
end
return 1
`;

// One subscription fewer; returns 1 when the user has none left on any live node: the user is
// away from now (KEYS[2]), and their LEAVE is due after the grace.
const PRESENCE_LEAVE = `${NOW_MS}
local field = ARGV[1] .. '${SEP}' .. ARGV[2]
local cur = redis.call('HGET', KEYS[1], field)
if not cur then return 0 end
local sep = string.find(cur, ':', 1, true)
local count = tonumber(string.sub(cur, 1, sep - 1)) - 1
if count > 0 then
  redis.call('HSET', KEYS[1], field, count .. string.sub(cur, sep))
  return 0
end
redis.call('HDEL', KEYS[1], field)
local all = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(all) do
  local s = string.find(f, '${SEP}', 1, true)
  local node, user = string.sub(f, 1, s - 1), string.sub(f, s + 1)
  if user == ARGV[2] and redis.call('EXISTS', 'sb:node:' .. node) == 1 then return 0 end
end
redis.call('HSET', KEYS[2], ARGV[2], now_ms())
return 1
`;

// The room's joined users (KEYS[1]) whose LEAVE is owed: no subscription on a live node (KEYS[2])
// and away (KEYS[3]) for at least ARGV[1] ms. A joined user with no live subscription and no
// away time (their node died, or stopped before it could record them) is away from now.
// KEYS[4] is the set of rooms with joined users, ARGV[2] the room.
const PRESENCE_DUE = `${NOW_MS}
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[2])
  return {}
end
local alive, live = {}, {}
for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
  local s = string.find(f, '${SEP}', 1, true)
  local node = string.sub(f, 1, s - 1)
  if alive[node] == nil then alive[node] = redis.call('EXISTS', 'sb:node:' .. node) == 1 end
  if alive[node] then live[string.sub(f, s + 1)] = true end
end
local now = now_ms()
local owed = {}
for _, user in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not live[user] then
    local away = redis.call('HGET', KEYS[3], user)
    if not away then
      redis.call('HSET', KEYS[3], user, now)
    elseif now - tonumber(away) >= tonumber(ARGV[1]) then
      table.insert(owed, user)
    end
  end
end
return owed
`;

interface Encoded {
  o: number;
  id: string;
  r: string;
  u: string;
  c: string;
  t: number;
  ts: string;
  k: string;
}

function decode(json: string): StoredMessage {
  const m = JSON.parse(json) as Encoded;
  return {
    offset: m.o,
    id: m.id,
    room: m.r,
    user: m.u,
    content: m.c,
    type: m.t,
    timestampMs: Number(m.ts),
    clientMessageId: m.k,
  };
}

function unavailable(err: unknown): StoreUnavailableError {
  if (err instanceof StoreUnavailableError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new StoreUnavailableError(`redis unavailable: ${reason}`);
}

/**
 * The Redis backend, for several nodes (STORE=redis://…): one Redis Stream per room holds the
 * history, with each message's offset as its entry ID; a Lua script assigns offsets and appends
 * atomically and publishes the message to the room's pub/sub channel, which is the room's change
 * feed on every node. Presence is a hash per room of node+user → subscriptions, counted only for
 * nodes whose heartbeat key is alive, so a dead node's members expire within NODE_TTL_S.
 *
 * Redis trouble is never fatal: while Redis is unreachable, every call fails at once with
 * StoreUnavailableError (the offline queue is off), feeds end with `lost`, and the client
 * reconnects by itself with backoff (at most 2 s between attempts).
 *
 * Works with a single Redis (or Valkey) 7 server; the scripts read node keys they do not
 * declare, so Redis Cluster is not supported.
 */
export async function createRedisBackend(options: RedisOptions): Promise<Backend> {
  const node = `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
  // At start, Redis unreachable after a few attempts is an error (the server says so and stops);
  // once connected, the client reconnects by itself for ever.
  let connected = false;
  const client: RedisClientType = createClient({
    url: options.url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 2_000,
      reconnectStrategy: (retries: number, cause: Error) =>
        !connected && retries >= 2 ? cause : Math.min(100 * 2 ** retries, 2_000),
    },
  });
  // Before the first connection, a failure is the start-up error itself (thrown below).
  client.on("error", (err: unknown) => {
    if (connected) options.onError(err, "redis connection");
  });
  try {
    await client.connect();
    connected = true;
  } catch (err) {
    try {
      client.destroy();
    } catch {
      // Already closed by its reconnect strategy.
    }
    throw unavailable(err);
  }

  // Script SHAs, loaded lazily and again after a Redis restart (NOSCRIPT).
  const shas = new Map<string, string>();
  async function run(
    script: string,
    keys: string[],
    args: string[],
    signal?: AbortSignal,
  ): Promise<unknown> {
    signal?.throwIfAborted();
    if (!client.isReady) throw new StoreUnavailableError("redis unavailable: not connected");
    // A command still queued when the caller's deadline passes is not sent (node-redis).
    const c = signal === undefined ? client : client.withAbortSignal(signal);
    try {
      let sha = shas.get(script);
      if (sha === undefined) {
        sha = await client.scriptLoad(script);
        shas.set(script, sha);
      }
      try {
        return await c.evalSha(sha, { keys, arguments: args });
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
        shas.delete(script);
        return await run(script, keys, args, signal);
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw unavailable(err);
    }
  }

  async function call<T>(fn: (c: RedisClientType) => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    if (!client.isReady) throw new StoreUnavailableError("redis unavailable: not connected");
    try {
      return await fn(
        signal === undefined ? client : (client.withAbortSignal(signal) as RedisClientType),
      );
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw unavailable(err);
    }
  }

  // The node's heartbeat: presence counts this node's subscriptions only while its key lives.
  const beat = () =>
    client.isReady
      ? client.set(nodeKey(node), "1", { EX: NODE_TTL_S }).then(
          () => {},
          (err: unknown) => options.onError(err, "node heartbeat"),
        )
      : Promise.resolve();
  await beat();
  const heartbeat = setInterval(beat, NODE_HEARTBEAT_MS);
  heartbeat.unref();

  await recordJoinedMembers(client).catch((err: unknown) => {
    throw unavailable(err);
  });
  const store = createStreamStore(client, run, call, options);
  const presence = createRedisPresence(client, run, call, node);
  const sweeper = setInterval(() => {
    if (!client.isReady) return;
    void presence.sweep().catch((err: unknown) => options.onError(err, "presence sweep"));
    if (options.historyMaxAgeS > 0) {
      void store.trimByAge().catch((err: unknown) => options.onError(err, "history trim"));
    }
  }, SWEEP_MS);
  sweeper.unref();

  return {
    store,
    presence,
    async close() {
      clearInterval(heartbeat);
      clearInterval(sweeper);
      await store.close();
      if (client.isReady) {
        // This node's subscriptions end with it: drop its presence now rather than at expiry.
        await client.del(nodeKey(node)).catch(() => {});
        await presence.sweep().catch(() => {});
      }
      await client.close().catch(() => client.destroy());
    },
  };
}

/** Set once the joined members of the history written before they were recorded are. */
const JOINED_RECORDED = "sb:joined-recorded";

/**
 * Once per Redis database, for history written before the APPEND script recorded who is joined:
 * each user whose latest JOIN or LEAVE in a room is a JOIN is recorded as joined (their LEAVE is
 * then owed, a grace after no node has them subscribed). Reads every room's stream once.
 */
async function recordJoinedMembers(client: RedisClientType): Promise<void> {
  if ((await client.set(JOINED_RECORDED, String(Date.now()), { NX: true })) === null) return;
  for (const room of await client.sMembers(ROOMS)) {
    const latest = new Map<string, { type: number; ts: number }>();
    let from = "-";
    for (;;) {
      const page = await client.xRange(logKey(room), from, "+", { COUNT: 1000 });
      for (const entry of page) {
        const m = decode(entry.message.m as string);
        if (m.type === MessageType.JOIN || m.type === MessageType.LEAVE) {
          latest.set(m.user, { type: m.type, ts: m.timestampMs });
        }
      }
      if (page.length < 1000) break;
      from = `(${(page.at(-1) as { id: string }).id}`;
    }
    for (const [user, { type, ts }] of latest) {
      if (type !== MessageType.JOIN) continue;
      await client.hSetNX(joinedKey(room), user, String(ts));
      await client.sAdd(JOINED_ROOMS, room);
    }
  }
}

type Run = (
  script: string,
  keys: string[],
  args: string[],
  signal?: AbortSignal,
) => Promise<unknown>;
type Call = <T>(fn: (c: RedisClientType) => Promise<T>, signal?: AbortSignal) => Promise<T>;

function createStreamStore(
  client: RedisClientType,
  run: Run,
  call: Call,
  options: RedisOptions,
): MessageStore & { trimByAge(): Promise<void> } {
  // One subscriber connection per node for every room feed, opened on the first watch. If it
  // breaks, every feed is lost (subscribers resume from their offsets) and the next watch opens
  // a new connection: pub/sub cannot replay what it missed, so it never reconnects by itself.
  let subscriber: RedisClientType | undefined;
  let connecting: Promise<RedisClientType> | undefined;
  const feeds = new Map<string, { feeds: Set<RoomFeed>; last: number | undefined }>();

  const loseAll = (reason: string) => {
    const all = [...feeds.values()].flatMap((f) => [...f.feeds]);
    feeds.clear();
    const dead = subscriber;
    subscriber = undefined;
    connecting = undefined;
    dead?.destroy();
    for (const feed of all) feed.lost(new Error(reason));
  };

  const openSubscriber = async (): Promise<RedisClientType> => {
    if (subscriber?.isReady) return subscriber;
    connecting ??= (async () => {
      const sub = client.duplicate({
        disableOfflineQueue: true,
        socket: { connectTimeout: 2_000, reconnectStrategy: false },
      }) as RedisClientType;
      sub.on("error", (err: unknown) => {
        options.onError(err, "redis feed connection");
        if (subscriber === sub) loseAll(err instanceof Error ? err.message : String(err));
      });
      sub.on("end", () => {
        if (subscriber === sub) loseAll("feed connection closed");
      });
      try {
        await sub.connect();
      } catch (err) {
        connecting = undefined;
        sub.destroy();
        throw unavailable(err);
      }
      subscriber = sub;
      return sub;
    })();
    return connecting;
  };

  const onFeedMessage = (room: string) => (json: string) => {
    const entry = feeds.get(room);
    if (entry === undefined) return;
    const message = decode(json);
    if (entry.last !== undefined && message.offset <= entry.last) return;
    if (entry.last !== undefined && message.offset !== entry.last + 1) {
      // Pub/sub lost something (it should not): subscribers resume from history instead.
      feeds.delete(room);
      for (const feed of entry.feeds) {
        feed.lost(new Error(`feed skipped from offset ${entry.last} to ${message.offset}`));
      }
      return;
    }
    entry.last = message.offset;
    for (const feed of entry.feeds) feed.message(message);
  };

  const entryToMessage = (entry: { message: Record<string, string> }): StoredMessage =>
    decode(entry.message.m as string);

  const lastOffsetOf = async (room: string): Promise<number> =>
    Number((await client.get(seqKey(room))) ?? 0);

  return {
    async append(drafts: readonly MessageDraft[], signal?: AbortSignal): Promise<AppendResult[]> {
      return Promise.all(
        drafts.map(async (d) => {
          const reply = String(
            await run(
              APPEND,
              [
                seqKey(d.room),
                logKey(d.room),
                ROOMS,
                idemKey(d.room, d.clientMessageId),
                joinedKey(d.room),
                presenceKey(d.room),
                awayKey(d.room),
                JOINED_ROOMS,
              ],
              [
                d.room,
                d.id,
                d.user,
                d.content,
                String(d.type),
                String(d.timestampMs),
                d.clientMessageId,
                String(options.idempotencyTtlS),
                String(options.historyMaxLength),
                feedChannel(d.room),
                String(options.presenceGraceMs ?? 0),
              ],
              signal,
            ),
          );
          if (reply === "2") return { message: { ...d, offset: 0 }, duplicate: true };
          return { message: decode(reply.slice(1)), duplicate: reply[0] === "1" };
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

    async watch(room: string, feed: RoomFeed): Promise<() => void> {
      const sub = await openSubscriber();
      let entry = feeds.get(room);
      if (entry === undefined) {
        entry = { feeds: new Set(), last: undefined };
        feeds.set(room, entry);
        try {
          // Resolves when Redis confirms the subscription: every later PUBLISH reaches us.
          await sub.subscribe(feedChannel(room), onFeedMessage(room));
        } catch (err) {
          feeds.delete(room);
          throw unavailable(err);
        }
      }
      entry.feeds.add(feed);
      const watched = entry;
      return () => {
        watched.feeds.delete(feed);
        if (watched.feeds.size > 0 || feeds.get(room) !== watched) return;
        feeds.delete(room);
        if (subscriber?.isReady) {
          void subscriber.unsubscribe(feedChannel(room)).catch(() => {});
        }
      };
    },

    async ping() {
      await call((c) => c.ping());
    },

    async close() {
      const sub = subscriber;
      subscriber = undefined;
      feeds.clear();
      await sub?.close().catch(() => sub.destroy());
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

function createRedisPresence(
  client: RedisClientType,
  run: Run,
  call: Call,
  node: string,
): Presence & { sweep(): Promise<void> } {
  // Fields of a room's presence hash, parsed, for live nodes only.
  const liveFields = async (room: string) => {
    const hash = await client.hGetAll(presenceKey(room));
    const parsed = Object.entries(hash).map(([field, value]) => {
      const sep = field.indexOf(SEP);
      const colon = value.indexOf(":");
      return {
        field,
        node: field.slice(0, sep),
        user: field.slice(sep + 1),
        count: Number(value.slice(0, colon)),
        since: Number(value.slice(colon + 1)),
      };
    });
    const nodes = [...new Set(parsed.map((p) => p.node))];
    const alive = nodes.length === 0 ? [] : await client.mGet(nodes.map((n) => nodeKey(n)));
    const live = new Set(nodes.filter((_, i) => alive[i] !== null));
    return { parsed, live };
  };

  return {
    async join(room, user) {
      const first = await run(
        PRESENCE_JOIN,
        [presenceKey(room), PRESENCE_ROOMS, awayKey(room)],
        [node, user, String(Date.now()), room],
      );
      return Number(first) === 1;
    },
    async leave(room, user) {
      const last = await run(PRESENCE_LEAVE, [presenceKey(room), awayKey(room)], [node, user]);
      return Number(last) === 1;
    },
    async members(room): Promise<MemberInfo[]> {
      return call(async () => {
        const [{ parsed, live }, joined] = await Promise.all([
          liveFields(room),
          client.hGetAll(joinedKey(room)),
        ]);
        const byUser = new Map<string, MemberInfo>();
        // Joined in the history and away within the grace: listed with no connection.
        for (const [user, ts] of Object.entries(joined)) {
          byUser.set(user, { user, joinedAtMs: Number(ts), connections: 0 });
        }
        for (const p of parsed) {
          if (!live.has(p.node)) continue;
          const m = byUser.get(p.user);
          if (m === undefined) {
            byUser.set(p.user, { user: p.user, joinedAtMs: p.since, connections: p.count });
          } else {
            m.connections += p.count;
            m.joinedAtMs = Math.min(m.joinedAtMs, p.since);
          }
        }
        return [...byUser.values()].sort(
          (a, b) => a.joinedAtMs - b.joinedAtMs || (a.user < b.user ? -1 : 1),
        );
      });
    },
    async subscriptions() {
      return call(async () => {
        const counts = new Map<string, number>();
        for (const room of await client.sMembers(PRESENCE_ROOMS)) {
          const { parsed, live } = await liveFields(room);
          const n = parsed.filter((p) => live.has(p.node)).reduce((sum, p) => sum + p.count, 0);
          if (n > 0) counts.set(room, n);
        }
        return counts;
      });
    },
    async due(graceMs) {
      return call(async () => {
        const owed: Array<{ room: string; user: string }> = [];
        for (const room of await client.sMembers(JOINED_ROOMS)) {
          const users = (await run(
            PRESENCE_DUE,
            [joinedKey(room), presenceKey(room), awayKey(room), JOINED_ROOMS],
            [String(graceMs), room],
          )) as string[];
          for (const user of users) owed.push({ room, user });
        }
        return owed;
      });
    },
    /** Deletes the presence of nodes whose heartbeat expired. */
    async sweep() {
      for (const room of await client.sMembers(PRESENCE_ROOMS)) {
        const { parsed, live } = await liveFields(room);
        const dead = parsed.filter((p) => !live.has(p.node)).map((p) => p.field);
        if (dead.length > 0) await client.hDel(presenceKey(room), dead);
        if (parsed.length === dead.length) await client.sRem(PRESENCE_ROOMS, room);
      }
    },
    async close() {},
  };
}
