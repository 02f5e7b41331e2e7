import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  encodeEnvelope,
  pipe,
  type Serialization,
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
import { clientWentAway } from "../ops/stream-observer.js";
import { toConnectError } from "../services/errors.js";
import type { RoomSubscription } from "../services/subscription.js";
import {
  CALL_ENDED,
  type CallContext,
  intercepted,
  leanCallContext,
  mergeHeaders,
  standIn,
  type Wire,
  type WireOptions,
  wireOf,
} from "../services/wire.js";
import { isBatchedStream } from "./batched-stream.js";
import { wellFormed } from "./undecodable.js";

type SubscribeMethod = (typeof ChatService)["method"]["subscribeMessages"];
type Open = (req: SubscribeRequest, signal: AbortSignal) => Promise<RoomSubscription>;

/**
 * SubscribeMessages as a connect-es UniversalHandler of its own: the fan-out path, where one
 * published message meets every subscriber. It speaks gRPC, gRPC-Web and the Connect streaming
 * protocol (proto and JSON) with connect-es's own protocol pieces (content types, timeouts,
 * envelopes, trailers, end-stream messages), runs the router's interceptors, and then, instead
 * of connect-es's per-message async-generator pipeline, writes each batch of queued messages as
 * one chunk of envelopes, each message serialized once per publish and codec (shared by every
 * subscriber: see {@link envelopeOf}).
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
): UniversalHandler {
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

  async function handle(req: UniversalServerRequest): Promise<UniversalServerResponse> {
    const wire = wireOf(req, false);
    if (wire === undefined) return fallback(req);
    const body = req.body as AsyncIterable<Uint8Array>;
    const { context, timeoutError } = leanCallContext(req, wire, method, options, false);
    let source: Batches;
    try {
      if (timeoutError !== undefined) throw timeoutError;
      const endFlag = wire.protocol === "grpc-web" ? grpcWeb.trailerFlag : connect.endStreamFlag;
      const res = await invoke({
        stream: true,
        service: method.parent,
        method,
        requestMethod: req.method,
        url: req.url,
        signal: context.signal,
        header: context.requestHeader,
        contextValues: context.values,
        message: pipe(
          body,
          transformSplitEnvelope(options.readMaxBytes),
          wire.protocol === "grpc"
            ? transformParseEnvelope(serialization.getI(wire.binary))
            : transformParseEnvelope(serialization.getI(wire.binary), endFlag),
        ),
      });
      mergeHeaders(res.header, context.responseHeader);
      mergeHeaders(res.trailer, context.responseTrailer);
      source = batchesOf(
        (res as StreamResponse<typeof SubscribeRequestSchema, typeof MessageSchema>).message,
      );
    } catch (err) {
      source = failed(err);
    }
    return {
      ...uResponseOk,
      header: context.responseHeader,
      ...(wire.protocol === "grpc" ? { trailer: context.responseTrailer } : {}),
      body: writer(wire, context, source, serialization.getO(wire.binary), endStream),
    };
  }

  return standIn(handle, fallback);
}

/** A response stream read in batches. */
interface Batches {
  next(): Promise<Message[] | undefined>;
  /** The consumer stopped early: with the write error, or the client went away. */
  stop(reason: unknown): void;
}

/**
 * A {@link BatchedStream} (a RoomSubscription the interceptors only watched) is read in batches;
 * any other stream (an interceptor wrapped it) one message at a time.
 */
function batchesOf(stream: AsyncIterable<Message>): Batches {
  if (isBatchedStream(stream)) {
    return {
      next: () => stream.next(),
      stop: (reason) => stream.close(reason ?? clientWentAway()),
    };
  }
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
 * The response body: one chunk per batch, then the protocol's ending (gRPC: the trailers, set on
 * the context's trailer Headers that the adapter sends after the body; gRPC-Web: a trailer
 * envelope; Connect: an end-stream message). connect-node writes each chunk and waits for
 * `drain` before asking for the next, so a subscriber that does not read stops being written to
 * and its queue overflows (ResourceExhausted), instead of buffering without bound.
 */
function writer(
  wire: Wire,
  context: CallContext,
  source: Batches,
  serialization: Serialization<Message>,
  endStream: ReturnType<typeof connect.createEndStreamSerialization>,
): AsyncIterable<Uint8Array> {
  let state: "open" | "ending" | "done" = "open";
  const end = (reason: unknown): IteratorResult<Uint8Array> => {
    const error = reason === undefined ? undefined : wellFormed(toConnectError(reason));
    context.abort(error ?? CALL_ENDED);
    if (wire.protocol === "connect") {
      state = "ending";
      const data = endStream.serialize({
        metadata: context.responseTrailer,
        ...(error === undefined ? {} : { error }),
      });
      return { done: false, value: encodeEnvelope(connect.endStreamFlag, data) };
    }
    grpc.setTrailerStatus(context.responseTrailer, error);
    if (wire.protocol === "grpc-web") {
      state = "ending";
      const data = grpcWeb.trailerSerialize(context.responseTrailer);
      return { done: false, value: encodeEnvelope(grpcWeb.trailerFlag, data) };
    }
    state = "done";
    return { done: true, value: undefined };
  };
  const iterator: AsyncIterator<Uint8Array> = {
    async next() {
      if (state !== "open") {
        state = "done";
        return { done: true, value: undefined };
      }
      let batch: Message[] | undefined;
      try {
        batch = await source.next();
      } catch (err) {
        return end(err);
      }
      if (batch === undefined) return end(undefined);
      return { done: false, value: chunkOf(batch, wire.binary, serialization) };
    },
    async return() {
      if (state === "open") {
        state = "done";
        source.stop(undefined);
        context.abort(CALL_ENDED);
      }
      return { done: true, value: undefined };
    },
    async throw(err: unknown) {
      if (state === "open") {
        state = "done";
        source.stop(err);
        context.abort(err ?? CALL_ENDED);
      }
      return { done: true, value: undefined };
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

// The enveloped bytes of each published Message, per codec. Every subscriber of a room is handed
// the same Message object (RoomHub builds it once per publish), so the first subscriber's writer
// serializes it and every other one writes the same bytes. Weak: gone with the message.
const binaryEnvelopes = new WeakMap<Message, Uint8Array>();
const jsonEnvelopes = new WeakMap<Message, Uint8Array>();

/** A message as one data envelope (flags 0: the same for all three protocols), cached. */
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
