import type { ServerResponse } from "node:http";
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import {
  Code,
  ConnectError,
  type ContextValues,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  encodeEnvelope,
  pipe,
  type Serialization,
  transformDecompressEnvelope,
  transformParseEnvelope,
  transformSplitEnvelope,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
  uResponseOk,
} from "@connectrpc/connect/protocol";
import * as connect from "@connectrpc/connect/protocol-connect";
import * as grpc from "@connectrpc/connect/protocol-grpc";
import * as grpcWeb from "@connectrpc/connect/protocol-grpc-web";
import type {
  ChatService,
  Message,
  MessageSchema,
  SubscribeRequest,
  SubscribeRequestSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { type BatchedStream, batchedStream, isBatchedStream, notReady } from "./batched-stream.js";
import { toConnectError } from "./errors.js";
import {
  endWithTrailers,
  type LeanHead,
  respondHead,
  type StreamServedHandler,
  streamUrl,
  streamWritable,
} from "./lean-stream.js";
import { clientWentAway } from "./stream-observer.js";
import {
  CLIENT_GONE,
  type NodeRequest,
  type NodeResponse,
  type NodeServedHandler,
  nodeBody,
  nodeHead,
  nodeHeaders,
  onUnexpected,
  urlOf,
  webHeaderInit,
} from "./unary-handler.js";
import { wellFormed } from "./undecodable.js";
import {
  CALL_ENDED,
  callContext,
  intercepted,
  type LeanCallContext,
  mergeHeaders,
  standIn,
  type Wire,
  type WireOptions,
  wireOf,
} from "./wire.js";

type SubscribeMethod = (typeof ChatService)["method"]["subscribeMessages"];
type Open = (req: SubscribeRequest, signal: AbortSignal) => Promise<BatchedStream<Message>>;

/**
 * SubscribeMessages as a connect-es UniversalHandler of its own: the fan-out path, where one
 * published message meets every subscriber. It speaks gRPC, gRPC-Web and the Connect streaming
 * protocol (proto and JSON) with connect-es's own protocol pieces (content types, timeouts,
 * envelopes, trailers, end-stream messages), runs the router's interceptors, and then, instead
 * of connect-es's per-message async-generator pipeline, writes each batch of queued messages as
 * one chunk of envelopes, each message serialized once per publish and codec (shared by every
 * subscriber: see {@link envelopeOf}). On the server its `serveNode` answers the call from Node's
 * request and response (edge/rpc/unary-routes.ts gives it a Fastify route), one `res.write` per
 * batch; called as a UniversalHandler it answers through connect-node's adapters, the same bytes.
 *
 * Everything else is left to connect-es's own handler (`fallback`): requests with compressed
 * bodies, gRPC-Web text, methods other than POST, unknown content types. Responses are never
 * compressed here (the server may always answer with identity encoding); messages are small.
 *
 * Errors end the stream as connect-es would end it: the interceptors' (Unauthenticated,
 * PermissionDenied, InvalidArgument, ResourceExhausted, Unavailable during shutdown), a bad
 * timeout header (InvalidArgument), a request without exactly one message (Unimplemented), a
 * body over `readMaxBytes` (ResourceExhausted), and the subscription's own (ResourceExhausted for
 * a slow consumer, Unavailable with the offset to resume from, OutOfRange).
 */
export function createSubscribeHandler(
  fallback: UniversalHandler,
  open: Open,
  options: WireOptions,
): NodeServedHandler & StreamServedHandler {
  const method = fallback.method as SubscribeMethod;
  const serialization = createMethodSerializationLookup(method, undefined, options.jsonOptions, {
    readMaxBytes: options.readMaxBytes,
    writeMaxBytes: 0xffffffff,
  });
  const endStream = connect.createEndStreamSerialization(options.jsonOptions);
  // The router's interceptors around the subscription's start, as connect-es applies them
  // (the first one outermost).
  const terminal: Parameters<Interceptor>[0] = async (req) => {
    const request = req as StreamRequest<typeof SubscribeRequestSchema>;
    const message = await open(await single(request.message), request.signal);
    return {
      stream: true,
      service: method.parent,
      method,
      header: new Headers(),
      trailer: new Headers(),
      message,
    } satisfies StreamResponse<typeof SubscribeRequestSchema, typeof MessageSchema>;
  };
  const invoke = intercepted(options.interceptors, terminal);

  /**
   * Starts one call: the router's interceptors around the subscription's start. Never rejects:
   * a failed start is a stream whose first read throws (the writer ends the call with it).
   */
  async function start(
    wire: Wire,
    context: LeanCallContext,
    timeoutError: ConnectError | undefined,
    body: AsyncIterable<Uint8Array>,
  ): Promise<Source> {
    try {
      if (timeoutError !== undefined) throw timeoutError;
      const endFlag = wire.protocol === "grpc-web" ? grpcWeb.trailerFlag : connect.endStreamFlag;
      const res = await invoke({
        stream: true,
        service: method.parent,
        method,
        requestMethod: context.requestMethod,
        url: context.url,
        signal: context.signal,
        header: context.requestHeader,
        contextValues: context.values,
        message: pipe(
          body,
          transformSplitEnvelope(options.readMaxBytes),
          // No request encoding here (wireOf): an envelope flagged compressed is refused, as
          // connect-es refuses it (InvalidArgument once rpc/undecodable.ts has mapped it).
          transformDecompressEnvelope(null, options.readMaxBytes),
          wire.protocol === "grpc"
            ? transformParseEnvelope(serialization.getI(wire.binary))
            : transformParseEnvelope(serialization.getI(wire.binary), endFlag),
        ),
      });
      mergeHeaders(res.header, context.responseHeader);
      // Only when there is something to add: the trailers are made when first used (wire.ts).
      for (const [key, value] of res.trailer) context.responseTrailer.set(key, value);
      return sourceOf(
        (res as StreamResponse<typeof SubscribeRequestSchema, typeof MessageSchema>).message,
      );
    } catch (err) {
      return failed(err);
    }
  }

  async function handle(req: UniversalServerRequest): Promise<UniversalServerResponse> {
    const wire = wireOf(req, false);
    if (wire === undefined) return fallback(req);
    const { context, timeoutError } = callContext(req, wire, method, options, false);
    const source = await start(wire, context, timeoutError, req.body as AsyncIterable<Uint8Array>);
    return {
      ...uResponseOk,
      header: context.responseHeader,
      ...(wire.protocol === "grpc" ? { trailer: context.responseTrailer } : {}),
      body: chunksOf(
        new ResponseBody(wire, context, source, serialization.getO(wire.binary), endStream),
      ),
    };
  }

  /**
   * The same call served straight from Node's request and response (HTTP/1.1, or node:http2's
   * compat pair), without connect-node's adapters: its request side (a web `Headers` copy, a
   * `URL`, an AbortController with a `close` listener, async generators around the body) stays
   * alive as long as the stream, and its response side writes each chunk through a promise with
   * an `error` and a `drain` listener added and removed per chunk. Here a {@link NodeWriter}
   * writes each batch with one `res.write` (node:http2 queues it on the stream), and only a
   * write that returns false waits, for `drain` (backpressure: a subscriber that does not read
   * is not written to and its queue overflows, ResourceExhausted). The response's `close` before
   * the end is the client going away: the call's signal aborts with Canceled. False when the
   * request is not one this handler answers itself (see wireOf): the caller then hands it to the
   * UniversalHandler.
   */
  function serveNode(
    req: NodeRequest,
    res: NodeResponse,
    contextValues: ContextValues | undefined,
  ): boolean {
    const headers = req.headers;
    const wire = wireOf(nodeHead(req.method, headers), false);
    if (wire === undefined) return false;
    const { context, timeoutError } = callContext(
      {
        method: "POST",
        url: urlOf(req),
        header: new Headers(webHeaderInit(headers)),
        contextValues,
      },
      wire,
      method,
      options,
      false,
    );
    // The client went away (`close` comes once; after the end too, when abort is a no-op and the
    // writer has nothing left to do): the call ends and the writer stops.
    let writer: NodeWriter | undefined;
    res.on("close", () => {
      context.abort(CLIENT_GONE);
      writer?.wake();
    });
    start(wire, context, timeoutError, nodeBody(req)).then((source) => {
      context.forgetRequestHeader();
      writer = new NodeWriter(
        res,
        new ResponseBody(wire, context, source, serialization.getO(wire.binary), endStream),
      );
      writer.run();
    }, onUnexpected);
    return true;
  }

  /**
   * The same call on a raw node:http2 stream, served by the lean lane (edge/rpc/lean-lane.ts),
   * which has read its protocol (gRPC, uncompressed) and context values from the request's
   * headers. An open stream then holds no compat request and response, no Fastify Request, Reply
   * and child logger: its {@link StreamWriter} writes each batch with one `stream.write`, the
   * same frames, headers and trailers as {@link serveNode}'s writer through the compat response.
   */
  function serveStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, head: LeanHead) {
    const { wire } = head;
    const { context, timeoutError } = callContext(
      {
        method: "POST",
        url: streamUrl(stream, headers),
        header: new Headers(webHeaderInit(headers)),
        contextValues: head.values,
      },
      wire,
      method,
      options,
      false,
    );
    let writer: StreamWriter | undefined;
    stream.on("close", () => {
      context.abort(CLIENT_GONE);
      writer?.wake();
    });
    start(wire, context, timeoutError, nodeBody(stream)).then((source) => {
      context.forgetRequestHeader();
      writer = new StreamWriter(
        stream,
        head.extra,
        new ResponseBody(wire, context, source, serialization.getO(wire.binary), endStream),
      );
      writer.run();
    }, onUnexpected);
  }

  return Object.assign(standIn(handle, fallback), { serveNode, serveStream });
}

/**
 * A response stream read in batches: a {@link BatchedStream} itself (a RoomSubscription the
 * interceptors only watched: no adapter object or closures per stream), or {@link Batches}.
 */
type Source = BatchedStream<Message> | Batches;

/** A stream that is not a BatchedStream, read one message per batch with `next` only. */
interface Batches {
  next(): Promise<Message[] | undefined>;
  /** The consumer stopped early: with the write error, or the client went away. */
  stop(reason: unknown): void;
}

function isBatched(source: Source): source is BatchedStream<Message> {
  return (source as Partial<BatchedStream<Message>>)[batchedStream] === true;
}

/**
 * A {@link BatchedStream} is read in batches as it is; any other stream (an interceptor wrapped
 * it) one message at a time.
 */
function sourceOf(stream: AsyncIterable<Message>): Source {
  if (isBatchedStream(stream)) return stream;
  const it = stream[Symbol.asyncIterator]();
  return {
    async next() {
      const result = await it.next();
      return result.done === true ? undefined : [result.value];
    },
    stop(reason) {
      if (reason === undefined) void it.return?.().catch(() => {});
      else void it.throw?.(reason).catch(() => {});
    },
  };
}

function failed(err: unknown): Batches {
  return {
    next: () => Promise.reject(err),
    stop: () => {},
  };
}

/**
 * The response body of one call: one chunk of envelopes per batch, then the protocol's ending
 * (gRPC: the trailers, set on the context's trailer Headers that are sent after the body;
 * gRPC-Web: a trailer envelope; Connect: an end-stream message).
 */
class ResponseBody {
  /** "open" while batches are read; "ending" once the last chunk (the ending) was handed out. */
  state: "open" | "ending" | "done" = "open";

  constructor(
    readonly wire: Wire,
    readonly context: LeanCallContext,
    readonly source: Source,
    private readonly serialization: Serialization<Message>,
    private readonly endStream: ReturnType<typeof connect.createEndStreamSerialization>,
  ) {}

  /**
   * The next chunk: a batch of envelopes, the protocol's ending chunk (after which `state` is
   * "ending"), or undefined once there is nothing more to write (gRPC's trailers are set then).
   */
  async next(): Promise<Uint8Array | undefined> {
    if (this.state !== "open") {
      this.state = "done";
      return undefined;
    }
    let batch: Message[] | undefined;
    try {
      batch = await this.source.next();
    } catch (err) {
      return this.end(err);
    }
    if (batch === undefined) return this.end(undefined);
    return this.chunk(batch);
  }

  /** A batch as one chunk of envelopes. */
  chunk(batch: Message[]): Uint8Array {
    return chunkOf(batch, this.wire.binary, this.serialization);
  }

  /**
   * The consumer stops before the end: `reason` is the write error, or undefined when the
   * client went away. The subscription closes (its observers hear of it) and the call ends.
   */
  stop(reason: unknown): void {
    if (this.state !== "open") return;
    this.state = "done";
    if (isBatched(this.source)) this.source.close(reason ?? clientWentAway());
    else this.source.stop(reason);
    this.context.abort(reason ?? CALL_ENDED);
  }

  /**
   * Ends the call (undefined `reason`: completed; else its error): the protocol's ending chunk,
   * or undefined for gRPC, whose trailers are set on the context's trailer Headers.
   */
  end(reason: unknown): Uint8Array | undefined {
    const { wire, context } = this;
    const error = reason === undefined ? undefined : wellFormed(toConnectError(reason));
    context.abort(error ?? CALL_ENDED);
    if (wire.protocol === "connect") {
      this.state = "ending";
      const data = this.endStream.serialize({
        metadata: context.responseTrailer,
        ...(error === undefined ? {} : { error }),
      });
      return encodeEnvelope(connect.endStreamFlag, data);
    }
    grpc.setTrailerStatus(context.responseTrailer, error);
    if (wire.protocol === "grpc-web") {
      this.state = "ending";
      const data = grpcWeb.trailerSerialize(context.responseTrailer);
      return encodeEnvelope(grpcWeb.trailerFlag, data);
    }
    this.state = "done";
    return undefined;
  }
}

/**
 * A {@link ResponseBody} as the body of a UniversalServerResponse. connect-node writes each
 * chunk and waits for `drain` before asking for the next, so a subscriber that does not read
 * stops being written to and its queue overflows (ResourceExhausted), instead of buffering
 * without bound.
 */
function chunksOf(body: ResponseBody): AsyncIterable<Uint8Array> {
  const iterator: AsyncIterator<Uint8Array> = {
    async next() {
      const chunk = await body.next();
      return chunk === undefined ? { done: true, value: undefined } : { done: false, value: chunk };
    },
    async return() {
      body.stop(undefined);
      return { done: true, value: undefined };
    },
    async throw(err: unknown) {
      body.stop(err);
      return { done: true, value: undefined };
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

/**
 * Writes a {@link ResponseBody}, in callbacks rather than promises: an idle stream keeps no
 * promise and no suspended function, only this object and the one callback (`wake`) its
 * subscription calls when a message is queued. The head goes out with the first chunk (an
 * interceptor may set headers until then, as with connect-node); each batch is one write; a
 * write that returns false waits for `drain` (backpressure); then the ending, the trailers and
 * the end. A response closed before the end (the client went away) stops the body. Where it
 * writes is the subclass's: a Node response ({@link NodeWriter}) or a raw HTTP/2 stream
 * ({@link StreamWriter}), the same frames either way.
 *
 * Wake-ups are coalesced: a publish wakes every subscriber of its room, and each writer runs once
 * in one shared microtask after the publish (see {@link scheduleRun}), not one promise chain per
 * subscriber.
 */
abstract class BatchWriter {
  protected headSent = false;
  /** Runs the writer soon (in the shared microtask): the subscription's and `drain`'s callback. */
  readonly wake = (): void => scheduleRun(this);

  constructor(protected readonly body: ResponseBody) {}

  /** Whether the response can still be written to. */
  protected abstract writable(): boolean;
  /** Sends the head (status 200, the context's response headers). */
  protected abstract respond(): void;
  /** Writes one chunk; false: wait for `drain` (the subclass has asked to be woken then). */
  protected abstract put(chunk: Uint8Array): boolean;
  /** Ends the response: the last chunk (if any), then gRPC's trailers or the plain end. */
  protected abstract end(last: Uint8Array | undefined): void;

  /** Writes what is ready, until it must wait (for a message, `drain`, or `next`). */
  run(): void {
    const { body } = this;
    const source = body.source;
    while (body.state === "open") {
      if (!this.writable()) {
        body.stop(undefined);
        return;
      }
      let batch: Message[] | undefined | typeof notReady;
      try {
        batch = isBatched(source) ? source.poll() : notReady;
      } catch (err) {
        this.finish(err);
        return;
      }
      if (batch === notReady) {
        if (isBatched(source) && source.onReady(this.wake)) return;
        // Not pollable (a wrapped stream) or replaying history: one promise per batch.
        source.next().then(
          (next) => {
            if (next === undefined) this.finish(undefined);
            else if (this.write(body.chunk(next))) this.run();
          },
          (err: unknown) => this.finish(err),
        );
        return;
      }
      if (batch === undefined) {
        this.finish(undefined);
        return;
      }
      if (!this.write(body.chunk(batch))) return;
    }
  }

  /**
   * Writes one chunk; false when the writer must wait: for `drain` (it wakes then), or for good
   * (the response is gone, or the write failed: the body is stopped).
   */
  private write(chunk: Uint8Array): boolean {
    if (!this.writable()) {
      this.body.stop(undefined);
      return false;
    }
    this.sendHead();
    try {
      return this.put(chunk);
    } catch (err) {
      this.body.stop(err);
      return false;
    }
  }

  /** Ends the call with `reason` (undefined: completed) and the response with its ending. */
  private finish(reason: unknown): void {
    const last = this.body.end(reason);
    if (!this.writable()) return;
    this.sendHead();
    this.end(last);
  }

  private sendHead(): void {
    if (this.headSent) return;
    this.headSent = true;
    this.respond();
  }
}

/** A {@link BatchWriter} on a Node response (HTTP/1.1, or node:http2's compat response). */
class NodeWriter extends BatchWriter {
  constructor(
    private readonly res: NodeResponse,
    body: ResponseBody,
  ) {
    super(body);
  }

  protected writable(): boolean {
    const res = this.res;
    return !res.writableEnded && !(res as { destroyed?: boolean }).destroyed && !res.closed;
  }

  protected respond(): void {
    (this.res as ServerResponse).writeHead(200, nodeHeaders(this.body.context.responseHeader));
    this.body.context.forgetResponseHeader();
  }

  protected put(chunk: Uint8Array): boolean {
    const res = this.res as ServerResponse;
    if (res.write(chunk)) return true;
    res.once("drain", this.wake);
    return false;
  }

  protected end(last: Uint8Array | undefined): void {
    const res = this.res as ServerResponse;
    if (last !== undefined) res.write(last);
    if (this.body.wire.protocol === "grpc") {
      res.addTrailers(nodeHeaders(this.body.context.responseTrailer));
    }
    res.end();
  }
}

/**
 * A {@link BatchWriter} on a raw node:http2 stream (the lean lane): the compat response's writes
 * made on the stream itself (edge/rpc/lean-stream.ts), plus the lane's `extra` headers (CORS).
 */
class StreamWriter extends BatchWriter {
  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly extra: LeanHead["extra"],
    body: ResponseBody,
  ) {
    super(body);
  }

  protected writable(): boolean {
    return streamWritable(this.stream);
  }

  protected respond(): void {
    respondHead(this.stream, 200, this.body.context.responseHeader, this.extra);
    this.body.context.forgetResponseHeader();
  }

  protected put(chunk: Uint8Array): boolean {
    if (this.stream.write(chunk)) return true;
    this.stream.once("drain", this.wake);
    return false;
  }

  protected end(last: Uint8Array | undefined): void {
    if (last !== undefined) this.stream.write(last);
    endWithTrailers(
      this.stream,
      this.body.wire.protocol === "grpc" ? this.body.context.responseTrailer : undefined,
    );
  }
}

// The writers woken since the last run, run together in one microtask: a publish to N
// subscribers costs one microtask, not N promise chains.
const due: BatchWriter[] = [];

/** Runs `writer` in the shared microtask (scheduled by the first writer woken). */
function scheduleRun(writer: BatchWriter): void {
  due.push(writer);
  if (due.length === 1) queueMicrotask(runDue);
}

function runDue(): void {
  // Writers woken while these run (a subscription ending others) join this same pass.
  for (let i = 0; i < due.length; i++) {
    try {
      (due[i] as BatchWriter).run();
    } catch (err) {
      onUnexpected(err);
    }
  }
  due.length = 0;
}

// The enveloped bytes of each published Message, per codec, keyed by the Message OBJECT. This
// relies on one invariant: every subscriber of a room is handed the same Message object
// (domain/room-hub.ts builds it once per publish), and no layer between the hub and this writer
// (subscription, BatchedStream, interceptors) copies or mutates it. Then the first subscriber's
// writer serializes it and every other one writes the same bytes. A copy would not be wrong on
// the wire, only serialized once per subscriber: `envelopesEncoded` counts the serializations,
// and subscribe-handler.test.ts fails when one publish to several subscribers costs more than
// one. Weak: gone with the message.
const binaryEnvelopes = new WeakMap<Message, Uint8Array>();
const jsonEnvelopes = new WeakMap<Message, Uint8Array>();
let encoded = 0;

/** Messages serialized into envelopes since the process started (cache misses of envelopeOf). */
export function envelopesEncoded(): number {
  return encoded;
}

/**
 * A message as one data envelope (flags 0: the same for all three protocols), cached per
 * Message object and codec (see the invariant above).
 */
export function envelopeOf(
  message: Message,
  binary: boolean,
  serialization: Serialization<Message>,
): Uint8Array {
  const cache = binary ? binaryEnvelopes : jsonEnvelopes;
  let envelope = cache.get(message);
  if (envelope === undefined) {
    envelope = encodeEnvelope(0, serialization.serialize(message));
    cache.set(message, envelope);
    encoded++;
  }
  return envelope;
}

function chunkOf(
  batch: Message[],
  binary: boolean,
  serialization: Serialization<Message>,
): Uint8Array {
  if (batch.length === 1) return envelopeOf(batch[0] as Message, binary, serialization);
  return Buffer.concat(batch.map((m) => envelopeOf(m, binary, serialization)));
}

/** The one request message of a server-streaming call (connect-es's rule and messages). */
async function single<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) {
    throw new ConnectError(
      "protocol error: missing input message for server-streaming method",
      Code.Unimplemented,
    );
  }
  const second = await it.next();
  if (second.done !== true) {
    throw new ConnectError(
      "protocol error: received extra input message for server-streaming method",
      Code.Unimplemented,
    );
  }
  return first.value;
}
