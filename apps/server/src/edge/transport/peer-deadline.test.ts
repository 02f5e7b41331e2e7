// PeerDeadline on real loopback sockets, with this process's event loop blocked by a busy-wait
// (as a burst of connections or a long GC pause blocks the server's).
import { once } from "node:events";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { LATE_TIMER_MS, PeerDeadline } from "./peer-deadline.js";

/** Blocks the event loop for `ms`. */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A connected pair: the client socket and the server's side of it. */
async function pair(): Promise<{ client: net.Socket; server: net.Socket }> {
  const listener = net.createServer();
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const { port } = listener.address() as net.AddressInfo;
  const accepted = once(listener, "connection") as Promise<[net.Socket]>;
  const client = net.connect(port, "127.0.0.1");
  client.on("error", () => {});
  await once(client, "connect");
  const [server] = await accepted;
  server.on("error", () => {});
  cleanups.push(() => {
    client.destroy();
    server.destroy();
    listener.close();
  });
  return { client, server };
}

/** A deadline on `server` that waits for `bytes` bytes; resolves with when it expired, ms. */
function watch(server: net.Socket, ms: number, bytes = 1) {
  let received = 0;
  server.on("data", (chunk: Buffer) => {
    received += chunk.length;
  });
  const started = performance.now();
  let expiredAfter: number | undefined;
  const deadline = PeerDeadline.start(ms, {
    met: () => received >= bytes,
    bytesRead: () => server.bytesRead,
    expire: () => {
      expiredAfter = performance.now() - started;
    },
  });
  cleanups.push(() => deadline.clear());
  return {
    deadline,
    received: () => received,
    expiredAfter: () => expiredAfter,
  };
}

describe("PeerDeadline", () => {
  it("premise: a plain timer that is due runs before bytes that arrived while the loop was blocked are read", async () => {
    const { client, server } = await pair();
    let received = 0;
    server.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    let seenByTimer: number | undefined;
    setTimeout(() => {
      seenByTimer = received;
    }, 100);
    client.write("x");
    block(300);
    await sleep(200);
    expect(received).toBe(1);
    // What a first-byte deadline on a plain timer saw: nothing, though the byte had arrived.
    expect(seenByTimer).toBe(0);
  });

  it("is met by bytes that arrived while the event loop was blocked past it", async () => {
    const { client, server } = await pair();
    const w = watch(server, 100);
    client.write("x");
    block(300);
    await sleep(300);
    expect(w.received()).toBe(1);
    expect(w.expiredAfter()).toBeUndefined();
  });

  it("expires a silent peer after one period", async () => {
    const { server } = await pair();
    const w = watch(server, 100);
    await sleep(600);
    const after = w.expiredAfter();
    expect(after).toBeGreaterThanOrEqual(95);
    expect(after).toBeLessThan(400);
  });

  it("gives a new period when the peer's bytes were waiting for the server, and expires it if it then falls silent", async () => {
    const { client, server } = await pair();
    // Waits for 10 bytes; the peer sends 1 while the server is blocked past the deadline.
    const w = watch(server, 200, 10);
    client.write("x");
    block(400);
    await sleep(100);
    expect(w.received()).toBe(1);
    expect(w.expiredAfter()).toBeUndefined();
    await sleep(600);
    const after = w.expiredAfter();
    // Expired one period after the late verdict (~400 ms), not at the first one.
    expect(after).toBeGreaterThanOrEqual(400 + 190);
    expect(after).toBeLessThan(400 + 200 + 400);
  });

  it(`gives a new period when its timer ran ${LATE_TIMER_MS} ms or more late, and expires a silent peer after it`, async () => {
    const { server } = await pair();
    const w = watch(server, 100);
    block(LATE_TIMER_MS + 200);
    await sleep(50);
    expect(w.expiredAfter()).toBeUndefined();
    await sleep(500);
    const after = w.expiredAfter();
    expect(after).toBeGreaterThanOrEqual(LATE_TIMER_MS + 200 + 95);
    expect(after).toBeLessThan(LATE_TIMER_MS + 200 + 100 + 400);
  });

  it("does nothing once cleared, also between its timer and its verdict", async () => {
    const { server } = await pair();
    const w = watch(server, 50);
    await sleep(150);
    expect(w.expiredAfter()).toBeDefined();
    // Cleared right after its timer ran, before the verdict's immediates: the first look at the
    // peer (met(), from the timer's callback) queues the clear. (Not a second 50 ms timer: a
    // loaded loop may run that one an iteration later, after the verdict.)
    let expired = false;
    let looked = false;
    const v: PeerDeadline = PeerDeadline.start(50, {
      met: () => {
        if (!looked) queueMicrotask(() => v.clear());
        looked = true;
        return false;
      },
      bytesRead: () => 0,
      expire: () => {
        expired = true;
      },
    });
    cleanups.push(() => v.clear());
    await sleep(200);
    expect(looked).toBe(true);
    expect(expired).toBe(false);
  });

  it("judges a deadline that passed by another's account after reading what arrived", async () => {
    const { client, server } = await pair();
    let received = 0;
    server.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    const verdicts: string[] = [];
    client.write("x");
    block(100);
    // The byte is in the kernel, unread: the verdict comes after the poll that reads it.
    PeerDeadline.passed(100, {
      met: () => received > 0,
      expire: () => verdicts.push("expired"),
    });
    await sleep(300);
    expect(received).toBe(1);
    expect(verdicts).toEqual([]);
    // Nothing arrives: expired at once (after one poll).
    const { server: silent } = await pair();
    PeerDeadline.passed(100, {
      met: () => false,
      bytesRead: () => silent.bytesRead,
      expire: () => verdicts.push("expired"),
    });
    await sleep(20);
    expect(verdicts).toEqual(["expired"]);
  });
});
