// REDIS_WAIT_REPLICAS on one Redis with a real replica (Debian's redis-server): a send is
// announced on the room's feed only once a replica acknowledged it; a send whose wait fails is
// stored but not announced (it reaches subscribers only when a later acknowledged one forces
// the gap to be read, or its retry is acknowledged); a master with no replica in sync refuses a
// send at once, unstored. The replica is stopped with SIGSTOP (it stays connected and stops
// acknowledging, as a stalled replica does) and killed with SIGKILL.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "redis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../../test/harness.js";
import { RedisServer } from "../../../test/redis-server.js";
import type { Backend } from "../backend.js";
import type { MessageDraft, StoredMessage } from "../message-store.js";
import { createRedisBackend } from "./backend.js";

let master: RedisServer;
let replica: ChildProcess | undefined;
/** The replica's directory (the RDB of its first sync). */
const replicaDir = mkdtempSync(join(tmpdir(), "switchboard-replica-"));
let db = 0;

beforeAll(async () => {
  master = await RedisServer.start();
  // A replica syncs at once (diskless sync waits 5 s for more replicas by default).
  const raw = createClient({ url: `redis://127.0.0.1:${master.port}` });
  await raw.connect();
  await raw.configSet("repl-diskless-sync-delay", "0");
  await raw.close();
});
afterEach(async () => {
  await stopReplica();
});
afterAll(async () => {
  await master?.close();
  rmSync(replicaDir, { recursive: true, force: true });
});

/** Starts a replica of the master; resolves once it is in sync. */
async function startReplica(): Promise<void> {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    [
      ...["--port", String(port), "--bind", "127.0.0.1", "--dir", replicaDir],
      ...["--save", "", "--appendonly", "no"],
      ...["--replicaof", "127.0.0.1", String(master.port)],
    ],
    { stdio: "ignore" },
  );
  replica = child;
  await until(async () => (await masterInfo()).includes("state=online"), "the replica in sync");
  // And acknowledging: a replica just put online may still be slow to answer (a busy machine).
  const raw = createClient({ url: `redis://127.0.0.1:${master.port}` });
  await raw.connect();
  try {
    await until(async () => {
      await raw.set("replica-probe", String(Date.now()));
      return Number(await raw.sendCommand(["WAIT", "1", "2000"])) === 1;
    }, "the replica to acknowledge a write");
  } finally {
    await raw.close();
  }
}

async function stopReplica(): Promise<void> {
  const child = replica;
  replica = undefined;
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
  await until(async () => !(await masterInfo()).includes("slave0:"), "the replica gone");
}

async function masterInfo(): Promise<string> {
  const raw = createClient({ url: `redis://127.0.0.1:${master.port}` });
  await raw.connect();
  try {
    return await raw.info("replication");
  } finally {
    await raw.close();
  }
}

async function until(condition: () => Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A backend with a replica wait on a fresh database of the master. */
function open(waitTimeoutMs: number): Promise<Backend> {
  db = (db % 15) + 1;
  return createRedisBackend({
    target: { kind: "redis", url: `redis://127.0.0.1:${master.port}/${db}` },
    historyMaxLength: 0,
    historyMaxAgeS: 0,
    idempotencyTtlS: 60,
    waitReplicas: 1,
    waitTimeoutMs,
    onError: () => {},
  });
}

let seq = 0;
function draft(room: string, clientMessageId = ""): MessageDraft {
  seq++;
  return {
    id: `id-${seq}`,
    room,
    user: "u",
    content: `m${seq}`,
    kind: "chat",
    timestampMs: Date.now(),
    clientMessageId,
  };
}

/** What a watch of `room` receives. */
async function watch(backend: Backend, room: string) {
  const seen: StoredMessage[] = [];
  const lost: Error[] = [];
  const stop = await backend.store.watch(room, {
    message: (m) => seen.push(m),
    lost: (err) => lost.push(err),
  });
  return { seen, lost, stop, offsets: () => seen.map((m) => m.offset) };
}

describe("REDIS_WAIT_REPLICAS=1 on one Redis", () => {
  it("a master with no replica in sync refuses a send at once, and stores nothing", async () => {
    const backend = await open(2_000);
    const started = Date.now();
    await expect(backend.store.append([draft("none", "k1")])).rejects.toThrow(
      "redis unavailable: the Redis server has 0 replicas in sync and REDIS_WAIT_REPLICAS is 1; the message was not stored",
    );
    // At once: not after REDIS_WAIT_TIMEOUT_MS (2 s).
    expect(Date.now() - started).toBeLessThan(1_000);
    const page = await backend.store.read({ room: "none", afterOffset: 0, limit: 10 });
    expect(page).toMatchObject({ messages: [], lastOffset: 0 });
    await backend.close();
  });

  it("announces a send once a replica has it; a failed wait is stored but not announced, and is delivered in order when a later send is acknowledged", async () => {
    await startReplica();
    const backend = await open(1_000);
    const feed = await watch(backend, "w");
    const [first] = await backend.store.append([draft("w", "a")]);
    expect(first?.message.offset).toBe(1);
    await until(async () => feed.seen.length === 1, "the acknowledged send announced");

    // The replica stops acknowledging (still connected): the wait times out.
    replica?.kill("SIGSTOP");
    await expect(backend.store.append([draft("w", "b")])).rejects.toThrow(
      "redis unavailable: 0 of 1 replicas acknowledged the message within 1000 ms (REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS); it may be stored: retry with the same client_message_id",
    );
    const stored = await backend.store.read({ room: "w", afterOffset: 1, limit: 10 });
    expect(stored.messages.map((m) => m.clientMessageId)).toEqual(["b"]);
    await sleep(200);
    // Stored, not acknowledged: nobody has seen it live.
    expect(feed.offsets()).toEqual([1]);

    replica?.kill("SIGCONT");
    // The next send is acknowledged: the replica has everything before it too, so the feed
    // reads the gap (offset 2) from history and delivers both, in order.
    const [third] = await backend.store.append([draft("w", "c")]);
    expect(third?.message.offset).toBe(3);
    await until(async () => feed.seen.length === 3, "offsets 2 and 3 delivered");
    expect(feed.offsets()).toEqual([1, 2, 3]);
    // The retry of the failed send finds it (same offset) and announces it again: not delivered
    // twice.
    const [retry] = await backend.store.append([draft("w", "b")]);
    expect(retry).toMatchObject({ duplicate: true, message: { offset: 2 } });
    const [fourth] = await backend.store.append([draft("w", "d")]);
    await until(async () => feed.seen.length >= 4, "offset 4 delivered");
    await sleep(100);
    expect(feed.offsets()).toEqual([1, 2, 3, fourth?.message.offset]);
    expect(feed.lost).toEqual([]);
    feed.stop();
    await backend.close();
  });

  it("a failed wait's retry, once acknowledged, announces it", async () => {
    await startReplica();
    const backend = await open(1_000);
    const feed = await watch(backend, "r");
    replica?.kill("SIGSTOP");
    await expect(backend.store.append([draft("r", "x")])).rejects.toThrow(/may be stored/);
    await sleep(100);
    expect(feed.seen).toEqual([]);
    replica?.kill("SIGCONT");
    const [retry] = await backend.store.append([draft("r", "x")]);
    expect(retry).toMatchObject({ duplicate: true, message: { offset: 1, clientMessageId: "x" } });
    await until(async () => feed.seen.length === 1, "the retried send announced");
    expect(feed.seen[0]?.clientMessageId).toBe("x");
    feed.stop();
    await backend.close();
  });

  it("after its replica is gone, one send waits out the timeout; the next are refused at once", async () => {
    await startReplica();
    const backend = await open(1_000);
    await backend.store.append([draft("gone")]);
    await stopReplica();
    // This node last saw a replica in sync: it waits, and learns.
    await expect(backend.store.append([draft("gone")])).rejects.toThrow(/0 of 1 replicas/);
    await sleep(50);
    const started = Date.now();
    await expect(backend.store.append([draft("gone")])).rejects.toThrow(
      /0 replicas in sync and REDIS_WAIT_REPLICAS is 1; the message was not stored/,
    );
    expect(Date.now() - started).toBeLessThan(800);
    // A replica back: sends are acknowledged again (the master is asked again at most every
    // 250 ms while it has too few).
    await startReplica();
    await sleep(300);
    const [ok] = await backend.store.append([draft("gone")]);
    expect(ok?.message.offset).toBe(3);
    await backend.close();
  });
});
