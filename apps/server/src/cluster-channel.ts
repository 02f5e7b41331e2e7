import cluster, { type Worker } from "node:cluster";

/**
 * Requests and notices between the primary of WORKERS=N and its workers, over the IPC channel
 * node:cluster opens to every worker (JSON, in order in each direction). A request is answered
 * once, by the handler of its kind on the other side (its return value, awaited); a notice is
 * not answered. Messages of other senders on the same channel (node:cluster's own, prom-client's
 * metrics aggregation) are left alone: each of ours carries {@link TAG}.
 */
const TAG = "switchboard:channel";

interface Envelope {
  tag: typeof TAG;
  kind: string;
  body?: unknown;
  /** Set on a request: the id its reply names. */
  id?: number;
  /** Set on a reply: the request's id. */
  reply?: number;
  /** Set on a reply whose handler threw: its message. */
  error?: string;
}

// biome-ignore lint/suspicious/noExplicitAny: a message's body is JSON; each handler checks its own shape.
type Body = any;

/** A worker's side of the channel: to and from the primary. */
export interface PrimaryLink {
  /**
   * Asks the primary; resolves with its handler's answer.
   * @throws Error with the handler's message when it threw, or when no handler takes `kind`.
   */
  request<T>(kind: string, body?: unknown): Promise<T>;
  /** Tells the primary; nothing is answered. */
  notify(kind: string, body?: unknown): void;
  /** Handles what the primary sends of `kind` (a request is answered with the return value). */
  on(kind: string, handler: (body: Body) => unknown): void;
}

/** The primary's side of the channel: to and from each worker, by node:cluster's worker id. */
export interface WorkerLinks {
  /** Handles what a worker sends of `kind` (a request is answered with the return value). */
  on(kind: string, handler: (worker: number, body: Body) => unknown): void;
  /** Tells one worker; nothing is answered. A worker that has gone is skipped. */
  send(worker: number, kind: string, body?: unknown): void;
  /**
   * Asks one worker.
   * @throws Error when it does not answer within `timeoutMs`, exits first, or its handler threw.
   */
  request<T>(worker: number, kind: string, body?: unknown, timeoutMs?: number): Promise<T>;
  /** The workers alive now, by id. */
  workers(): number[];
  /** Called once for each worker that exits (or is killed), after its own state is dropped. */
  onExit(handler: (worker: number) => void): void;
}

/** A request waiting for its reply. */
interface Waiting {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/** Answers an envelope with `handler`'s result, through `reply` (requests only). */
function answer(envelope: Envelope, run: () => unknown, reply: (message: Envelope) => void): void {
  const respond = (result: { body?: unknown; error?: string }) => {
    if (envelope.id !== undefined) {
      reply({ tag: TAG, kind: envelope.kind, reply: envelope.id, ...result });
    }
  };
  let result: unknown;
  try {
    result = run();
  } catch (err) {
    respond({ error: err instanceof Error ? err.message : String(err) });
    return;
  }
  Promise.resolve(result).then(
    (body) => respond({ body }),
    (err: unknown) => respond({ error: err instanceof Error ? err.message : String(err) }),
  );
}

function isEnvelope(message: unknown): message is Envelope {
  return (
    typeof message === "object" && message !== null && (message as { tag?: unknown }).tag === TAG
  );
}

/**
 * Both ends of a channel, over any transport that carries JSON-able messages in order: node:cluster
 * (below) or an in-process pair for tests ({@link createLocalLinks}).
 */
class Endpoint {
  private readonly handlers = new Map<string, (from: number, body: Body) => unknown>();
  private readonly waiting = new Map<number, Waiting & { peer: number }>();
  private next = 0;

  constructor(private readonly post: (peer: number, message: Envelope) => void) {}

  on(kind: string, handler: (from: number, body: Body) => unknown): void {
    this.handlers.set(kind, handler);
  }

  notify(peer: number, kind: string, body: unknown): void {
    this.post(peer, { tag: TAG, kind, body });
  }

  request<T>(peer: number, kind: string, body: unknown, timeoutMs?: number): Promise<T> {
    const id = ++this.next;
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiting.delete(id);
          reject(new Error(`no answer to ${kind} within ${timeoutMs} ms`));
        }, timeoutMs);
        timer.unref();
      }
      this.waiting.set(id, {
        peer,
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.post(peer, { tag: TAG, kind, body, id });
    });
  }

  receive(from: number, message: unknown): void {
    if (!isEnvelope(message)) return;
    if (message.reply !== undefined) {
      const waiting = this.waiting.get(message.reply);
      if (waiting === undefined) return;
      this.waiting.delete(message.reply);
      if (message.error !== undefined) waiting.reject(new Error(message.error));
      else waiting.resolve(message.body);
      return;
    }
    const handler = this.handlers.get(message.kind);
    answer(
      message,
      () => {
        if (handler === undefined) throw new Error(`nothing handles ${message.kind}`);
        return handler(from, message.body);
      },
      (reply) => this.post(from, reply),
    );
  }

  /** Fails the requests waiting on `peer` (it has gone). */
  gone(peer: number): void {
    for (const [id, waiting] of this.waiting) {
      if (waiting.peer !== peer) continue;
      this.waiting.delete(id);
      waiting.reject(new Error(`worker ${peer} exited`));
    }
  }
}

/** Takes a failed IPC write's error: the peer is gone, and its exit is handled where it is seen. */
const ignore = (): void => {};

/** The primary's id on a worker's side of an {@link Endpoint}. */
const PRIMARY = 0;

function primaryLink(endpoint: Endpoint): PrimaryLink {
  return {
    request: (kind, body) => endpoint.request(PRIMARY, kind, body),
    notify: (kind, body) => endpoint.notify(PRIMARY, kind, body),
    on: (kind, handler) => endpoint.on(kind, (_from, body) => handler(body)),
  };
}

let ownPrimaryLink: PrimaryLink | undefined;

/** In a node:cluster worker: its link to the primary (one per process). */
export function clusterPrimaryLink(): PrimaryLink {
  if (ownPrimaryLink !== undefined) return ownPrimaryLink;
  if (!cluster.isWorker) throw new Error("not a node:cluster worker");
  const endpoint = new Endpoint((_peer, message) => {
    // A worker whose channel closed is exiting (node:cluster ends it): nothing to tell. The
    // callback takes a failed write (the primary gone), which would otherwise be thrown.
    if (process.connected) process.send?.(message, undefined, undefined, ignore);
  });
  process.on("message", (message: unknown) => endpoint.receive(PRIMARY, message));
  ownPrimaryLink = primaryLink(endpoint);
  return ownPrimaryLink;
}

let ownWorkerLinks: WorkerLinks | undefined;

/** In the node:cluster primary: its links to every worker, present and future (one per process). */
export function clusterWorkerLinks(): WorkerLinks {
  if (ownWorkerLinks !== undefined) return ownWorkerLinks;
  if (!cluster.isPrimary) throw new Error("not the node:cluster primary");
  const exits: Array<(worker: number) => void> = [];
  const live = (id: number): Worker | undefined => {
    const worker = cluster.workers?.[id];
    return worker?.isConnected() ? worker : undefined;
  };
  // A worker may die between the check and the write (EPIPE): the callback takes the error,
  // which node:cluster would otherwise emit on the worker and crash the primary with. The
  // worker's exit is handled when it comes.
  const endpoint = new Endpoint((peer, message) => {
    live(peer)?.send(message, ignore);
  });
  cluster.on("message", (worker, message: unknown) => endpoint.receive(worker.id, message));
  cluster.on("exit", (worker) => {
    endpoint.gone(worker.id);
    for (const exit of exits) exit(worker.id);
  });
  ownWorkerLinks = {
    on: (kind, handler) => endpoint.on(kind, handler),
    send: (worker, kind, body) => endpoint.notify(worker, kind, body),
    request: (worker, kind, body, timeoutMs) => endpoint.request(worker, kind, body, timeoutMs),
    workers: () =>
      Object.values(cluster.workers ?? {})
        .filter((w): w is Worker => w?.isConnected() === true)
        .map((w) => w.id),
    onExit: (handler) => exits.push(handler),
  };
  return ownWorkerLinks;
}

/** An in-process primary and its workers, for tests: see {@link createLocalLinks}. */
export interface LocalLinks {
  primary: WorkerLinks;
  /** Adds a worker; returns its id and its link. */
  connect(): { id: number; link: PrimaryLink };
  /** The worker exits: what it sends from now on is dropped, and the primary is told. */
  kill(id: number): void;
}

/**
 * A primary and workers in one process, for tests of what runs over the channel: messages are
 * copied through JSON, as node:cluster's IPC does, and delivered on a later turn, in order.
 */
export function createLocalLinks(): LocalLinks {
  const workers = new Map<number, Endpoint>();
  const exits: Array<(worker: number) => void> = [];
  let next = 0;
  const deliver = (to: Endpoint, from: number, message: Envelope, alive: () => boolean) => {
    const copy: unknown = JSON.parse(JSON.stringify(message));
    setImmediate(() => {
      if (alive()) to.receive(from, copy);
    });
  };
  const primary = new Endpoint((peer, message) => {
    const worker = workers.get(peer);
    if (worker !== undefined) deliver(worker, PRIMARY, message, () => workers.has(peer));
  });
  return {
    primary: {
      on: (kind, handler) => primary.on(kind, handler),
      send: (worker, kind, body) => primary.notify(worker, kind, body),
      request: (worker, kind, body, timeoutMs) => primary.request(worker, kind, body, timeoutMs),
      workers: () => [...workers.keys()],
      onExit: (handler) => exits.push(handler),
    },
    connect() {
      const id = ++next;
      const endpoint = new Endpoint((_peer, message) => {
        if (workers.has(id)) deliver(primary, id, message, () => true);
      });
      workers.set(id, endpoint);
      return { id, link: primaryLink(endpoint) };
    },
    kill(id) {
      if (!workers.delete(id)) return;
      // What it sent before it died arrives first, as over a pipe.
      setImmediate(() => {
        primary.gone(id);
        for (const exit of exits) exit(id);
      });
    },
  };
}
