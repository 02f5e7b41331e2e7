import { createClient, type RedisClientType } from "redis";
import { StoreUnavailableError } from "../message-store.js";

/**
 * One node-redis connection, as the Redis store uses it: every call fails at once with
 * StoreUnavailableError while Redis is unreachable (the offline queue is off), and the client
 * reconnects by itself with backoff (at most 2 s between attempts).
 */
export interface RedisConnection {
  readonly client: RedisClientType;
  /**
   * Runs `fn` with the client (bound to `signal`: a command still queued when the caller's
   * deadline passes is not sent).
   * @throws the signal's reason once it is aborted; StoreUnavailableError for any Redis failure.
   */
  call<T>(fn: (client: RedisClientType) => Promise<T>, signal?: AbortSignal): Promise<T>;
  /**
   * Runs a Lua script by its SHA (EVALSHA), loading it first (SCRIPT LOAD) and again after a
   * Redis restart forgot it (NOSCRIPT).
   * @throws as {@link RedisConnection.call}.
   */
  evalScript(
    source: string,
    keys: string[],
    args: string[],
    signal?: AbortSignal,
  ): Promise<unknown>;
  /** Closes the connection (at once if a graceful close fails). */
  close(): Promise<void>;
}

/** Any failure of a Redis call, as the store reports it. */
export function unavailable(err: unknown): StoreUnavailableError {
  if (err instanceof StoreUnavailableError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new StoreUnavailableError(`redis unavailable: ${reason}`);
}

/**
 * Connects to `url`. At start, Redis unreachable after a few attempts is an error (the server
 * says so and stops); once connected, the client reconnects by itself for ever.
 *
 * @param onError background errors once connected (connection trouble), with their context.
 * @throws StoreUnavailableError when Redis cannot be reached.
 */
export async function connectRedis(
  url: string,
  onError: (err: unknown, context: string) => void,
): Promise<RedisConnection> {
  let connected = false;
  const client: RedisClientType = createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 2_000,
      reconnectStrategy: (retries: number, cause: Error) =>
        !connected && retries >= 2 ? cause : Math.min(100 * 2 ** retries, 2_000),
    },
  });
  // Before the first connection, a failure is the start-up error itself (thrown below).
  client.on("error", (err: unknown) => {
    if (connected) onError(err, "redis connection");
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

  const call = async <T>(
    fn: (c: RedisClientType) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> => {
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
  };

  // Script SHAs, loaded lazily and again after a Redis restart (NOSCRIPT).
  const shas = new Map<string, string>();
  const evalScript = (
    source: string,
    keys: string[],
    args: string[],
    signal?: AbortSignal,
  ): Promise<unknown> =>
    call(async (c) => {
      for (;;) {
        let sha = shas.get(source);
        if (sha === undefined) {
          sha = await client.scriptLoad(source);
          shas.set(source, sha);
        }
        try {
          return await c.evalSha(sha, { keys, arguments: args });
        } catch (err) {
          if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
          shas.delete(source);
        }
      }
    }, signal);

  return {
    client,
    call,
    evalScript,
    async close() {
      await client.close().catch(() => client.destroy());
    },
  };
}
