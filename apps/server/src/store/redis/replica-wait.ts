import { NotDurableError } from "../message-store.js";
import { type RedisConnection, unavailable } from "./connection.js";
import { feedChannel, seqKey } from "./keys.js";

/** A master's replicas in sync, as last read, and when (ms, Date.now()). */
interface Known {
  online: number;
  atMs: number;
}

/** A master known to have too few replicas is asked again at most this often, ms. */
const RECHECK_MS = 250;
/** A master known to have enough is asked again (in the background) after this, ms. */
const REFRESH_MS = 5_000;

/**
 * REDIS_WAIT_REPLICAS on the Redis store: an append is acknowledged only once `replicas`
 * replicas of the master that stored it have it (`WAIT replicas timeoutMs` on the connection
 * that ran the append script, which waits for every write sent on it so far).
 *
 * Before an append, {@link ReplicaWait.check} refuses it at once, unstored, when the room's
 * master is known to have fewer replicas in sync than that: a `WAIT` there could only time out,
 * and a message stored meanwhile could be neither acknowledged nor announced. What it knows is
 * `INFO replication` on that master, read on the first append to it, again after a `WAIT` that
 * timed out, every {@link RECHECK_MS} while it has too few, and otherwise in the background
 * every {@link REFRESH_MS}; so a master that just lost its replica costs one timed-out `WAIT`
 * per node at most, and a master just promoted in a failover (it has no replica until one
 * rejoins) none. A master is named by its address (`host:port`) in the client's slot map.
 *
 * Errors are StoreUnavailableError (Connect code Unavailable): NotDurableError for the two
 * outcomes above (too few replicas known, nothing stored; too few acknowledged, maybe stored),
 * and their messages name REDIS_WAIT_REPLICAS: the operator's remedy is a replica back or a
 * smaller setting.
 */
export class ReplicaWait {
  private readonly known = new Map<string, Known>();
  private readonly probing = new Map<string, Promise<Known>>();

  constructor(
    private readonly connection: RedisConnection,
    /** REDIS_WAIT_REPLICAS, > 0. */
    readonly replicas: number,
    /** REDIS_WAIT_TIMEOUT_MS. */
    readonly timeoutMs: number,
  ) {}

  /**
   * Resolves when `room`'s master may have enough replicas in sync: at once when it was seen
   * with enough lately, else after asking it.
   * @throws NotDurableError (`mayBeStored` false) when it has fewer: nothing was stored;
   *   StoreUnavailableError when it cannot be asked; the signal's reason.
   */
  async check(room: string, signal?: AbortSignal): Promise<void> {
    const owner = this.ownerOf(room);
    let known = this.known.get(owner);
    const age = known === undefined ? Number.POSITIVE_INFINITY : Date.now() - known.atMs;
    if (known === undefined || (known.online < this.replicas && age >= RECHECK_MS)) {
      known = await this.probe(owner, room, signal);
    } else if (age >= REFRESH_MS) {
      void this.probe(owner, room).catch(() => {});
    }
    if (known.online < this.replicas) {
      throw new NotDurableError(
        `redis unavailable: ${owner === "single" ? "the Redis server" : `the master of room ${room} (${owner})`} has ${known.online} replica${known.online === 1 ? "" : "s"} in sync and REDIS_WAIT_REPLICAS is ${this.replicas}; the message was not stored`,
        false,
      );
    }
  }

  /**
   * `WAIT` for the append just run on `room`'s master.
   * @throws NotDurableError (`mayBeStored` true) when fewer replicas acknowledged within the
   *   timeout (the message is stored on the master and may survive); StoreUnavailableError; the
   *   signal's reason.
   */
  async wait(room: string, signal?: AbortSignal): Promise<void> {
    const acked = await this.connection.waitReplicas(
      seqKey(room),
      this.replicas,
      this.timeoutMs,
      signal,
    );
    if (acked >= this.replicas) return;
    // Ask the master how many replicas it has now, so that the next appends there fail at once
    // rather than after the timeout too.
    let owner: string | undefined;
    try {
      owner = this.ownerOf(room);
    } catch {
      // The slot has no master now; the next check asks whichever has it.
    }
    if (owner !== undefined) void this.probe(owner, room).catch(() => {});
    throw new NotDurableError(
      `redis unavailable: ${acked} of ${this.replicas} replicas acknowledged the message within ${this.timeoutMs} ms (REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS); it may be stored: retry with the same client_message_id`,
      true,
    );
  }

  private ownerOf(room: string): string {
    try {
      return this.connection.ownerOf(feedChannel(room));
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** Reads how many replicas the master `owner` of `room` has in sync (one read at a time). */
  private async probe(owner: string, room: string, signal?: AbortSignal): Promise<Known> {
    let pending = this.probing.get(owner);
    if (pending === undefined) {
      pending = (async () => {
        try {
          const online = await this.connection.onlineReplicas(seqKey(room));
          if (online === undefined) {
            // Not a master: the slot map is stale (a failover). Refresh it; say nothing of `owner`.
            this.connection.failed();
            throw unavailable("the master of the room's slot is changing");
          }
          const known = { online, atMs: Date.now() };
          this.known.set(owner, known);
          return known;
        } finally {
          this.probing.delete(owner);
        }
      })();
      this.probing.set(owner, pending);
    }
    const known = await pending;
    signal?.throwIfAborted();
    return known;
  }
}
