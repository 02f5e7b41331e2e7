import { clusterWorkerLinks, type WorkerLinks } from "../../cluster-channel.js";
import { LocalLimitCounter, type StreamSlot } from "../limits.js";
import type { JoinedSource } from "../presence.js";
import type { WakeEntry } from "./feeds.js";
import { createSqliteStore } from "./message-store.js";

const key = (room: string, user: string) => `${room}\u001f${user}`;

/** One user's open subscriptions to one room, per worker. */
type Subscriptions = Map<number, { count: number; since: number }>;

/** A LEAVE being stored by one worker; presence calls for that member wait for it. */
interface Departure {
  worker: number;
  done: Promise<void>;
  release: () => void;
}

/** Answers of the coordinator, as they travel (JSON). */
export interface CoordinatorWire {
  /** `presence.members`: [user, connections, oldest subscription's start ms]. */
  members: Array<[string, number, number]>;
  /** `presence.subscriptions`: [room, open subscriptions]. */
  subscriptions: Array<[string, number]>;
  /** `presence.due`: [room, user]. */
  due: Array<[string, string]>;
}

/**
 * The primary of WORKERS=N on SQLite: what the workers sharing the one database file must agree
 * on and the file does not hold. The workers ask over node:cluster IPC (cluster-channel.ts):
 *
 * - **Change-feed wake-ups.** Which worker follows which room (a room with a subscriber there:
 *   `feed.follow`, acknowledged, and `feed.unfollow`). After each group commit a worker sends the
 *   newest offset of every room it appended to (`feed.appended`, one notice per commit); the
 *   coordinator forwards each room's to the other workers that follow it (`feed.wake`), one
 *   notice per worker. A worker reads the messages themselves from the database (feeds.ts);
 *   with tracing on, a room's entry also carries the trace contexts of its sampled appends
 *   (feeds.ts, WakeEntry), passed on as they came, for the followers' delivery spans.
 *   Per message this costs a map lookup here, nothing per room that has no follower elsewhere.
 *   When a worker dies, the others are told to read every room they follow again
 *   (`feed.resync`): its last commit's notice may never have been sent.
 * - **Presence, counted once per machine.** Every worker's subscriptions per user and room
 *   (`presence.join` answers whether it is the user's first on any worker, `presence.leave`
 *   whether it was the last); who is away since when; the LEAVEs owed (`presence.due`, from the
 *   database's `members` table, which this process reads through its own connection). A LEAVE is
 *   stored only under a claim (`presence.claim`, `presence.release`): granted when the user has
 *   no subscription on any worker and has been away for the grace, and meanwhile that member's
 *   joins and leaves wait, so a LEAVE never lands after a new subscription's JOIN was skipped.
 *   A worker that dies drops its subscriptions: users with none left elsewhere are away from
 *   that moment and get the grace to come back, as a dead node's members do on Redis.
 * - **Limits, counted once per machine.** The publish token buckets and the open-stream counts of
 *   every identity ({@link LocalLimitCounter}, here), a round trip per publish (when PUBLISH_RATE
 *   is on) and per stream opened; a dead worker's stream slots are given back at once.
 */
export class SqliteCoordinator {
  /** room → the workers that follow it. */
  private readonly followers = new Map<string, Set<number>>();
  /** worker → the rooms it follows. */
  private readonly following = new Map<number, Set<string>>();
  /** room → user → subscriptions per worker. */
  private readonly present = new Map<string, Map<string, Subscriptions>>();
  /** room␟user → when the user's last subscription ended (or was found missing), ms. */
  private readonly away = new Map<string, number>();
  private readonly departures = new Map<string, Departure>();
  private readonly limits = new LocalLimitCounter();
  /** worker → its open stream slots, by id. */
  private readonly slots = new Map<number, Map<number, StreamSlot>>();
  private nextSlot = 0;

  constructor(
    private readonly links: WorkerLinks,
    /** The database's record of joined members (MessageStore.joined). */
    private readonly joined: JoinedSource,
    private readonly now: () => number = Date.now,
  ) {
    links.on("feed.follow", (worker, room: string) => {
      this.follow(worker, room);
      return true;
    });
    links.on("feed.unfollow", (worker, room: string) => this.unfollow(worker, room));
    links.on("feed.appended", (worker, appended: WakeEntry[]) => this.appended(worker, appended));
    links.on("presence.join", (worker, b: { room: string; user: string; at: number }) =>
      this.join(worker, b.room, b.user, b.at),
    );
    links.on("presence.leave", (worker, b: { room: string; user: string; at: number }) =>
      this.leave(worker, b.room, b.user, b.at),
    );
    links.on("presence.members", (_worker, room: string) => this.members(room));
    links.on("presence.subscriptions", () => this.subscriptions());
    links.on("presence.due", (_worker, graceMs: number) => this.due(graceMs));
    links.on("presence.claim", (worker, b: { room: string; user: string; graceMs: number }) =>
      this.claim(worker, b.room, b.user, b.graceMs),
    );
    links.on("presence.release", (worker, b: { room: string; user: string }) =>
      this.release(worker, b.room, b.user),
    );
    links.on("limits.take", (_worker, b: { identity: string; ratePerS: number; burst: number }) =>
      this.limits.takePublishToken(b.identity, b.ratePerS, b.burst),
    );
    links.on("limits.acquire", (worker, b: { identity: string; max: number }) =>
      this.acquire(worker, b.identity, b.max),
    );
    links.on("limits.release", (worker, id: number) => this.releaseSlot(worker, id));
    links.onExit((worker) => this.exited(worker));
  }

  private follow(worker: number, room: string): void {
    let workers = this.followers.get(room);
    if (workers === undefined) {
      workers = new Set();
      this.followers.set(room, workers);
    }
    workers.add(worker);
    let rooms = this.following.get(worker);
    if (rooms === undefined) {
      rooms = new Set();
      this.following.set(worker, rooms);
    }
    rooms.add(room);
  }

  private unfollow(worker: number, room: string): void {
    const workers = this.followers.get(room);
    workers?.delete(worker);
    if (workers?.size === 0) this.followers.delete(room);
    this.following.get(worker)?.delete(room);
  }

  private appended(from: number, appended: WakeEntry[]): void {
    let wakes: Map<number, WakeEntry[]> | undefined;
    for (const entry of appended) {
      const workers = this.followers.get(entry[0]);
      if (workers === undefined) continue;
      for (const worker of workers) {
        if (worker === from) continue;
        wakes ??= new Map();
        let list = wakes.get(worker);
        if (list === undefined) {
          list = [];
          wakes.set(worker, list);
        }
        list.push(entry);
      }
    }
    for (const [worker, list] of wakes ?? []) this.links.send(worker, "feed.wake", list);
  }

  /** Waits while a LEAVE of the member is being stored (see the class comment). */
  private async settled(k: string): Promise<void> {
    for (let d = this.departures.get(k); d !== undefined; d = this.departures.get(k)) await d.done;
  }

  private total(room: string, user: string): number {
    let n = 0;
    for (const s of this.present.get(room)?.get(user)?.values() ?? []) n += s.count;
    return n;
  }

  private async join(worker: number, room: string, user: string, at: number): Promise<boolean> {
    const k = key(room, user);
    if (this.departures.has(k)) await this.settled(k);
    this.away.delete(k);
    const first = this.total(room, user) === 0;
    let users = this.present.get(room);
    if (users === undefined) {
      users = new Map();
      this.present.set(room, users);
    }
    let subs = users.get(user);
    if (subs === undefined) {
      subs = new Map();
      users.set(user, subs);
    }
    const mine = subs.get(worker);
    if (mine === undefined) subs.set(worker, { count: 1, since: at });
    else mine.count++;
    return first;
  }

  private async leave(worker: number, room: string, user: string, at: number): Promise<boolean> {
    const k = key(room, user);
    if (this.departures.has(k)) await this.settled(k);
    const users = this.present.get(room);
    const subs = users?.get(user);
    const mine = subs?.get(worker);
    if (users === undefined || subs === undefined || mine === undefined) return false;
    mine.count--;
    if (mine.count > 0) return false;
    subs.delete(worker);
    if (subs.size > 0) return false;
    users.delete(user);
    if (users.size === 0) this.present.delete(room);
    this.away.set(k, at);
    return true;
  }

  private members(room: string): CoordinatorWire["members"] {
    const list: CoordinatorWire["members"] = [];
    for (const [user, subs] of this.present.get(room) ?? []) {
      let connections = 0;
      let since = Number.POSITIVE_INFINITY;
      for (const s of subs.values()) {
        connections += s.count;
        since = Math.min(since, s.since);
      }
      list.push([user, connections, since]);
    }
    return list;
  }

  private subscriptions(): CoordinatorWire["subscriptions"] {
    const list: CoordinatorWire["subscriptions"] = [];
    for (const [room, users] of this.present) {
      let n = 0;
      for (const subs of users.values()) for (const s of subs.values()) n += s.count;
      list.push([room, n]);
    }
    return list;
  }

  private async due(graceMs: number): Promise<CoordinatorWire["due"]> {
    const now = this.now();
    const owed: CoordinatorWire["due"] = [];
    const members = new Set<string>();
    for (const { room, user } of await this.joined()) {
      const k = key(room, user);
      members.add(k);
      if (this.total(room, user) > 0 || this.departures.has(k)) continue;
      const since = this.away.get(k);
      if (since === undefined) this.away.set(k, now);
      else if (now - since >= graceMs) owed.push([room, user]);
    }
    // Whoever the history no longer lists (their LEAVE is stored) is no longer away.
    for (const k of this.away.keys()) if (!members.has(k)) this.away.delete(k);
    return owed;
  }

  private claim(worker: number, room: string, user: string, graceMs: number): boolean {
    const k = key(room, user);
    if (this.departures.has(k) || this.total(room, user) > 0) return false;
    const since = this.away.get(k);
    if (since === undefined) {
      // Nobody saw this member leave: away from now, owed a LEAVE after the grace.
      this.away.set(k, this.now());
      return false;
    }
    if (this.now() - since < graceMs) return false;
    let release = () => {};
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.departures.set(k, { worker, done, release });
    return true;
  }

  private release(worker: number, room: string, user: string): void {
    const k = key(room, user);
    const departure = this.departures.get(k);
    if (departure === undefined || departure.worker !== worker) return;
    this.departures.delete(k);
    departure.release();
  }

  private async acquire(worker: number, identity: string, max: number): Promise<number> {
    const slot = await this.limits.acquireStream(identity, max);
    if (slot === undefined) return 0;
    const id = ++this.nextSlot;
    let mine = this.slots.get(worker);
    if (mine === undefined) {
      mine = new Map();
      this.slots.set(worker, mine);
    }
    mine.set(id, slot);
    return id;
  }

  private releaseSlot(worker: number, id: number): void {
    const mine = this.slots.get(worker);
    mine?.get(id)?.release();
    mine?.delete(id);
  }

  private exited(worker: number): void {
    for (const room of this.following.get(worker) ?? []) this.unfollow(worker, room);
    this.following.delete(worker);
    // Its subscriptions end with it: their users are away from now unless on another worker.
    const now = this.now();
    for (const [room, users] of this.present) {
      for (const [user, subs] of users) {
        if (!subs.delete(worker) || subs.size > 0) continue;
        users.delete(user);
        this.away.set(key(room, user), now);
      }
      if (users.size === 0) this.present.delete(room);
    }
    for (const [k, departure] of this.departures) {
      if (departure.worker !== worker) continue;
      this.departures.delete(k);
      departure.release();
    }
    for (const slot of this.slots.get(worker)?.values() ?? []) slot.release();
    this.slots.delete(worker);
    // Its last commit's wake-up may never have been sent: every follower reads again.
    for (const other of this.links.workers()) {
      if (other !== worker) this.links.send(other, "feed.resync");
    }
  }
}

/**
 * In the primary of WORKERS=N on SQLite, before the workers are forked: opens the database in
 * `dataDir` (creating or upgrading it, so that the workers find it ready, and failing here with
 * one error rather than in every worker), and serves the workers ({@link SqliteCoordinator}).
 * The primary keeps its connection for reading the `members` table; it writes nothing.
 *
 * @returns closes the primary's connection.
 * @throws SqliteError or a system error (DATA_DIR) when the database cannot be opened.
 */
export function startSqliteCoordinator(
  dataDir: string,
  links: WorkerLinks = clusterWorkerLinks(),
): () => Promise<void> {
  const store = createSqliteStore(dataDir);
  new SqliteCoordinator(links, (room) => store.joined(room));
  return () => store.close();
}
