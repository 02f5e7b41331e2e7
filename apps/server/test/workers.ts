// WORKERS=N: which worker serves a client, and the workers' process ids. node:cluster's primary
// hands each new connection to the next worker in turn, so a client pinned to one HTTP/2
// connection stays on one worker; the access log's `requestId` (the caller's x-request-id)
// names the instance (`HOST:PORT#N`) that served a call.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { type Client, createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type Message } from "@switchboard/proto/gen/chat/chat_pb";
import type { ServerProcess } from "./harness.js";
import { descendantsOf } from "./process-tree.js";

/** A ChatService client on one HTTP/2 connection (gRPC), and the worker instance serving it. */
export interface PinnedClient {
  client: Client<typeof ChatService>;
  instance: string;
}

/** The instance that serves `client`'s connection: one call, and its access-log line. */
export async function instanceOf(
  server: ServerProcess,
  client: Client<typeof ChatService>,
): Promise<string> {
  const id = `which-worker-${randomUUID()}`;
  await client.listRooms({}, { headers: { "x-request-id": id } });
  const record = await server.waitForRecord(
    (r) => r.requestId === id,
    5_000,
    `the access-log line of request ${id}`,
  );
  return String(record.instance);
}

/**
 * A client whose connection is served by an instance that `wanted` accepts (any by default):
 * new connections until one lands there.
 * @throws after 12 connections none of which did.
 */
export async function pinnedClient(
  server: ServerProcess,
  wanted: (instance: string) => boolean = () => true,
): Promise<PinnedClient> {
  const seen: string[] = [];
  for (let i = 0; i < 12; i++) {
    const client = createClient(
      ChatService,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc", httpVersion: "2" }),
    );
    const instance = await instanceOf(server, client);
    if (wanted(instance)) return { client, instance };
    seen.push(instance);
  }
  throw new Error(`no connection landed on the wanted worker; they went to ${seen.join(", ")}`);
}

/** One client per worker of a WORKERS=`n` server, each on a different worker. */
export async function clientPerWorker(server: ServerProcess, n: number): Promise<PinnedClient[]> {
  const pinned: PinnedClient[] = [];
  for (let i = 0; i < n; i++) {
    pinned.push(await pinnedClient(server, (inst) => !pinned.some((p) => p.instance === inst)));
  }
  return pinned;
}

/**
 * The running workers of the server's primary: node:cluster worker id (the `#N` of the
 * instance) → process id, read from /proc (a worker's environment holds NODE_UNIQUE_ID).
 */
export function workerPids(server: ServerProcess): Map<number, number> {
  const primary = server.pid;
  const workers = new Map<number, number>();
  if (primary === undefined) return workers;
  for (const pid of descendantsOf(primary)) {
    let environ = "";
    try {
      environ = readFileSync(`/proc/${pid}/environ`, "utf8");
    } catch {
      continue; // it has exited
    }
    const id = /(?:^|\0)NODE_UNIQUE_ID=(\d+)/.exec(environ)?.[1];
    if (id !== undefined) workers.set(Number(id), pid);
  }
  return workers;
}

/** The worker id of an instance name (`HOST:PORT#N` → N). */
export function workerId(instance: string): number {
  const id = /#(\d+)$/.exec(instance)?.[1];
  if (id === undefined) throw new Error(`${instance} is not a worker's instance`);
  return Number(id);
}

/** Every stored message of `room`, oldest first (GetHistory, page after page). */
export async function history(
  client: Client<typeof ChatService>,
  room: string,
): Promise<Message[]> {
  const all: Message[] = [];
  let after = 0n;
  for (;;) {
    const page = await client.getHistory({ room, afterOffset: after, limit: 500 });
    all.push(...page.messages);
    if (!page.hasMore) return all;
    after = page.messages.at(-1)?.offset ?? after;
  }
}

/**
 * Resolves once `condition` holds (a condition that throws, while a server restarts, is asked
 * again); fails after `ms` naming `what`.
 */
export async function eventually(
  condition: () => Promise<boolean> | boolean,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await condition()) return;
    } catch {
      // asked again
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * One HTTP/1.1 request (a Connect unary call with a JSON `body`, or a GET without) on a
 * connection of its own, which the primary hands to the next worker.
 */
export function once(url: string, body?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: body === undefined ? "GET" : "POST",
        agent: false,
        headers: body === undefined ? {} : { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
