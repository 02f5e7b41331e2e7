import { createHash } from "node:crypto";
import calculateSlot from "cluster-key-slot";
import { createClient, createCluster, type RedisClientType, type RedisClusterType } from "redis";
import { StoreUnavailableError } from "../message-store.js";

/** Where the Redis store lives: one server (`redis://…` URL) or a Redis Cluster (seed nodes). */
export type RedisTarget =
  | { readonly kind: "redis"; readonly url: string }
  | { readonly kind: "redis-cluster"; readonly nodes: readonly string[] };

/**
 * The commands the Redis store sends, as both node-redis's client and its cluster client
 * implement them. Every call names at most one key, so that the cluster client routes it to the
 * key's master; a single server takes them all.
 */
export interface StoreClient {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, options?: { EX?: number; NX?: true }): Promise<string | null>;
  del(key: string): Promise<number>;
  exists(key: string): Promise<number>;
  sAdd(key: string, member: string): Promise<number>;
  sRem(key: string, member: string): Promise<number>;
  sMembers(key: string): Promise<string[]>;
  hGetAll(key: string): Promise<Record<string, string>>;
  hKeys(key: string): Promise<string[]>;
  hLen(key: string): Promise<number>;
  hDel(key: string, fields: string[]): Promise<number>;
  hSetNX(key: string, field: string, value: string): Promise<number>;
  xLen(key: string): Promise<number>;
  xRange(key: string, start: string, end: string, options?: { COUNT: number }): Promise<Entry[]>;
  xRevRange(key: string, start: string, end: string, options?: { COUNT: number }): Promise<Entry[]>;
  xTrim(key: string, strategy: "MINID", threshold: string): Promise<number>;
}

/** A stream entry as node-redis returns it. */
export interface Entry {
  id: string;
  message: Record<string, string>;
}

/**
 * The Redis store's connection to one server or to a cluster: every call fails at once with
 * StoreUnavailableError while its Redis is unreachable (the offline queue is off), and the
 * clients reconnect by themselves with backoff (at most 2 s between attempts). On a cluster, a
 * failed call also refreshes the slot map (at most every 250 ms): after a failover, calls reach
 * the promoted replica.
 */
export interface RedisConnection {
  readonly target: RedisTarget;
  /** Whether calls can be sent now (a cluster: whether the client is open). */
  readonly isReady: boolean;
  /** The commands, routed by key (no signal: background work). */
  readonly client: StoreClient;
  /**
   * Runs `fn` with the client (bound to `signal`: a command still queued when the caller's
   * deadline passes is not sent).
   * @throws the signal's reason once it is aborted; StoreUnavailableError for any Redis failure.
   */
  call<T>(fn: (client: StoreClient) => Promise<T>, signal?: AbortSignal): Promise<T>;
  /**
   * Runs a Lua script (EVALSHA, or EVAL when the server does not know it yet: EVAL also caches
   * it), on the master of `keys[0]`. Every key must be in that key's slot.
   * @throws as {@link RedisConnection.call}.
   */
  evalScript(
    source: string,
    keys: string[],
    args: string[],
    signal?: AbortSignal,
  ): Promise<unknown>;
  /**
   * `WAIT replicas timeoutMs` on the master of `key` (the connection the script that wrote to it
   * used): blocks until `replicas` replicas acknowledged every write sent on it so far, or the
   * timeout passes.
   * @returns the number of replicas that acknowledged.
   * @throws as {@link RedisConnection.call}.
   */
  waitReplicas(
    key: string,
    replicas: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<number>;
  /**
   * `SPUBLISH channel message` on the master of `channel`'s slot (a room's feed, when the append
   * script does not publish: see message-store.ts).
   * @returns the number of this shard's subscriber connections that received it.
   * @throws as {@link RedisConnection.call}.
   */
  publish(channel: string, message: string): Promise<number>;
  /**
   * How many replicas of the master of `key` are connected and in sync (`INFO replication`,
   * `state=online`: the replicas `WAIT` counts); undefined when the server that answered is not
   * a master (the slot map is stale: a failover is under way).
   * @throws as {@link RedisConnection.call}.
   */
  onlineReplicas(key: string, signal?: AbortSignal): Promise<number | undefined>;
  /**
   * Which server serves the sharded pub/sub `channel`: `single` on one server, the slot's
   * master's `host:port` on a cluster (from the client's slot map).
   */
  ownerOf(channel: string): string;
  /**
   * A new client (not yet connected) of `owner` ({@link RedisConnection.ownerOf}) for
   * SSUBSCRIBE, that never reconnects by itself (pub/sub cannot replay what it missed).
   */
  subscriber(owner: string): RedisClientType;
  /** Reports a failure outside {@link RedisConnection.call} (a cluster refreshes its slot map). */
  failed(): void;
  /**
   * Whether Redis answers (PING): one server, or on a cluster any master (a master down fails
   * only the calls on its slots until its replica takes over, so it does not make this node
   * unready).
   * @throws StoreUnavailableError when none answers.
   */
  ping(signal?: AbortSignal): Promise<void>;
  /** Closes the connection (at once if a graceful close fails). */
  close(): Promise<void>;
}

/** Any failure of a Redis call, as the store reports it. */
export function unavailable(err: unknown): StoreUnavailableError {
  if (err instanceof StoreUnavailableError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new StoreUnavailableError(`redis unavailable: ${reason}`);
}

const sha1 = (source: string) => createHash("sha1").update(source).digest("hex");

/** The socket options of every client: a connect attempt gives up after 2 s. */
const CONNECT_TIMEOUT_MS = 2_000;

/**
 * Connects to `target`. At start, Redis unreachable after a few attempts is an error (the server
 * says so and stops); once connected, the client reconnects by itself for ever.
 *
 * @param onError background errors once connected (connection trouble), with their context.
 * @param onReady the client is connected again after connection trouble (a cluster: a node's
 *   client is).
 * @throws StoreUnavailableError when Redis cannot be reached.
 */
export async function connectRedis(
  target: RedisTarget,
  onError: (err: unknown, context: string) => void,
  onReady: () => void = () => {},
): Promise<RedisConnection> {
  return target.kind === "redis"
    ? connectServer(target, onError, onReady)
    : connectCluster(target, onError, onReady);
}

/** The parts that differ between one server and a cluster; {@link build} adds the rest. */
interface Driver {
  target: RedisTarget;
  isReady(): boolean;
  commands(signal?: AbortSignal): StoreClient;
  /** Sends a raw command to the master of `key`. */
  send(key: string, args: string[], signal?: AbortSignal): Promise<unknown>;
  /** Called after a failed call (a cluster refreshes its slot map). */
  failed(): void;
  ownerOf(channel: string): string;
  subscriber(owner: string): RedisClientType;
  ping(signal?: AbortSignal): Promise<unknown>;
  close(): Promise<void>;
}

function build(driver: Driver): RedisConnection {
  const call = async <T>(fn: (c: StoreClient) => Promise<T>, signal?: AbortSignal): Promise<T> => {
    signal?.throwIfAborted();
    if (!driver.isReady()) throw new StoreUnavailableError("redis unavailable: not connected");
    try {
      return await fn(driver.commands(signal));
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      driver.failed();
      throw unavailable(err);
    }
  };
  const shas = new Map<string, string>();
  return {
    target: driver.target,
    get isReady() {
      return driver.isReady();
    },
    client: driver.commands(),
    call,
    evalScript(source, keys, args, signal) {
      const key = keys[0] as string;
      let sha = shas.get(source);
      if (sha === undefined) {
        sha = sha1(source);
        shas.set(source, sha);
      }
      const n = String(keys.length);
      return call(async () => {
        try {
          return await driver.send(key, ["EVALSHA", sha, n, ...keys, ...args], signal);
        } catch (err) {
          if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
          // This server has not seen the script yet (or restarted, or was promoted).
          return await driver.send(key, ["EVAL", source, n, ...keys, ...args], signal);
        }
      }, signal);
    },
    waitReplicas(key, replicas, timeoutMs, signal) {
      return call(
        async () =>
          Number(await driver.send(key, ["WAIT", String(replicas), String(timeoutMs)], signal)),
        signal,
      );
    },
    publish(channel, message) {
      return call(async () => Number(await driver.send(channel, ["SPUBLISH", channel, message])));
    },
    onlineReplicas(key, signal) {
      return call(
        async () => onlineReplicas(String(await driver.send(key, ["INFO", "replication"], signal))),
        signal,
      );
    },
    ownerOf: (channel) => driver.ownerOf(channel),
    subscriber: (owner) => driver.subscriber(owner),
    failed: () => driver.failed(),
    async ping(signal) {
      await call(() => driver.ping(signal), signal);
    },
    close: () => driver.close(),
  };
}

/**
 * The replicas in sync in an `INFO replication` reply (`slave<n>:…,state=online,…` lines);
 * undefined when the server is not a master.
 */
export function onlineReplicas(info: string): number | undefined {
  if (!/^role:master\r?$/m.test(info)) return undefined;
  return info.split("\n").filter((line) => /^slave\d+:.*\bstate=online\b/.test(line)).length;
}

const reconnect =
  (isConnected: () => boolean) =>
  (retries: number, cause: Error): number | Error =>
    !isConnected() && retries >= 2 ? cause : Math.min(100 * 2 ** retries, 2_000);

/** A subscriber connection: no offline queue, no reconnection. */
const SUBSCRIBER_OPTIONS = {
  disableOfflineQueue: true,
  socket: { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: false as const },
};

async function connectServer(
  target: { kind: "redis"; url: string },
  onError: (err: unknown, context: string) => void,
  onReady: () => void,
): Promise<RedisConnection> {
  let connected = false;
  const client: RedisClientType = createClient({
    url: target.url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectStrategy: reconnect(() => connected),
    },
  });
  // Before the first connection, a failure is the start-up error itself (thrown below).
  client.on("error", (err: unknown) => {
    if (connected) onError(err, "redis connection");
  });
  client.on("ready", () => {
    if (connected) onReady();
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
  const bound = (signal?: AbortSignal) =>
    signal === undefined ? client : (client.withAbortSignal(signal) as RedisClientType);
  return build({
    target,
    isReady: () => client.isReady,
    commands: (signal) => bound(signal) as unknown as StoreClient,
    send: (_key, args, signal) => bound(signal).sendCommand(args),
    failed() {},
    ownerOf: () => "single",
    subscriber: () => client.duplicate(SUBSCRIBER_OPTIONS) as RedisClientType,
    ping: (signal) => bound(signal).ping(),
    async close() {
      await client.close().catch(() => client.destroy());
    },
  });
}

/** A cluster's slot map is refreshed at most this often after failed calls, ms. */
const REDISCOVER_MS = 250;

async function connectCluster(
  target: { kind: "redis-cluster"; nodes: readonly string[] },
  onError: (err: unknown, context: string) => void,
  onReady: () => void,
): Promise<RedisConnection> {
  let connected = false;
  const cluster: RedisClusterType = createCluster({
    rootNodes: target.nodes.map((node) => ({ url: `redis://${node}` })),
    defaults: {
      disableOfflineQueue: true,
      socket: {
        connectTimeout: CONNECT_TIMEOUT_MS,
        // A master that stays unreachable is given up after a few attempts (about 3 s), so that
        // a refresh of the slot map does not wait on it; its replica takes over its slots.
        reconnectStrategy: (retries: number, cause: Error) =>
          retries >= 4 ? cause : Math.min(100 * 2 ** retries, 2_000),
      },
    },
  });
  cluster.on("error", (err: unknown) => {
    if (connected) onError(err, "redis cluster");
  });
  cluster.on("node-error", (err: unknown) => {
    if (connected) onError(err, "redis cluster node");
  });
  cluster.on("node-ready", () => {
    if (connected) onReady();
  });
  try {
    await cluster.connect();
    connected = true;
  } catch (err) {
    cluster.destroy();
    throw unavailable(err);
  }

  // node-redis refreshes its slot map on MOVED and ASK, not when a master stops answering: a
  // failed call does it here, so that calls go to the promoted replica once the cluster failed
  // over. A master whose client gave up reconnecting gets a new client on its next call.
  let lastRediscover = 0;
  const failed = () => {
    const now = Date.now();
    if (now - lastRediscover < REDISCOVER_MS || !cluster.isOpen) return;
    lastRediscover = now;
    for (const master of cluster.masters) {
      const node = master as { client?: { isOpen: boolean } | undefined };
      if (node.client !== undefined && !node.client.isOpen) node.client = undefined;
    }
    const start = cluster.masters.find((m) => m.client?.isOpen)?.client;
    if (start === undefined) return;
    cluster._slots.rediscover(start).catch((err: unknown) => onError(err, "redis cluster slots"));
  };
  const bound = (signal?: AbortSignal) =>
    signal === undefined ? cluster : cluster.withCommandOptions({ abortSignal: signal });
  return build({
    target,
    isReady: () => cluster.isOpen,
    commands: (signal) => bound(signal) as unknown as StoreClient,
    send: (key, args, signal) =>
      cluster.sendCommand(
        key,
        false,
        args,
        signal === undefined ? undefined : { abortSignal: signal },
      ),
    failed,
    ownerOf(channel) {
      const master = cluster.slots[calculateSlot(channel)]?.master;
      if (master === undefined)
        throw new StoreUnavailableError("redis unavailable: slot not served");
      return `${master.host}:${master.port}`;
    },
    ping: (signal) =>
      Promise.any(
        cluster.masters.map(async (master) =>
          signal === undefined
            ? (await cluster.nodeClient(master)).ping()
            : (await cluster.nodeClient(master)).withAbortSignal(signal).ping(),
        ),
      ),
    subscriber: (owner) =>
      createClient({ url: `redis://${owner}`, ...SUBSCRIBER_OPTIONS }) as RedisClientType,
    async close() {
      await cluster.close().catch(() => cluster.destroy());
    },
  });
}
