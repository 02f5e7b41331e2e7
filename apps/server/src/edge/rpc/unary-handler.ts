import type {
  IncomingHttpHeaders,
  IncomingMessage,
  OutgoingHttpHeaders,
  ServerResponse,
} from "node:http";
import type {
  IncomingHttpHeaders as Http2Headers,
  Http2ServerRequest,
  Http2ServerResponse,
  ServerHttp2Stream,
} from "node:http2";
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  isMessage,
  type JsonWriteOptions,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type HandlerContext,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  encodeEnvelope,
  mergeNonProtocolHeaders,
  readAllBytes,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import * as connect from "@connectrpc/connect/protocol-connect";
import * as grpc from "@connectrpc/connect/protocol-grpc";
import * as grpcWeb from "@connectrpc/connect/protocol-grpc-web";
import { toConnectError } from "./errors.js";
import {
  endWithTrailers,
  type LeanHead,
  respondHead,
  type StreamServedHandler,
  streamUrl,
  streamWritable,
} from "./lean-stream.js";
import { undecodableAsInvalidArgument, wellFormed } from "./undecodable.js";
import {
  CALL_ENDED,
  type CallContext,
  callContext,
  intercepted,
  mergeHeaders,
  standIn,
  type Wire,
  type WireOptions,
  wireOf,
} from "./wire.js";

/** A unary method's implementation, as in a connect-es ServiceImpl. */
export type UnaryImpl<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: HandlerContext,
) => Promise<MessageInitShape<O>> | MessageInitShape<O>;

/**
 * A unary method as a connect-es UniversalHandler of its own. connect-es runs a unary call over
 * gRPC and gRPC-Web through its streaming pipeline (a chain of async generators for one
 * message each way) and aborts every call's signal without a reason (a DOMException with a stack
 * trace per call): in the profile of unary gRPC SendMessage, connect's async-iterable helpers
 * were on the stack for 24% of the time and DOMException 7% (bench/README.md). This handler reads
 * the body, runs the router's interceptors and the implementation, and answers, with connect-es's
 * protocol pieces (content types, timeouts, envelopes, trailers, the Connect error JSON and HTTP
 * status), in straight-line code.
 *
 * It answers uncompressed POSTs over gRPC, gRPC-Web and the Connect protocol, proto and JSON;
 * everything else goes to connect-es's own handler (`fallback`): compressed bodies, Connect GET,
 * unknown content types. Responses are never compressed here (the server may always answer with
 * identity encoding). Errors are connect-es's: a bad timeout header (InvalidArgument), a body
 * over `readMaxBytes` (ResourceExhausted), a gRPC body that is not exactly one envelope
 * (InvalidArgument or Unimplemented), an unparsable message or an envelope flagged compressed
 * without an encoding (InvalidArgument, as connect-go; connect-es says Internal: see
 * edge/rpc/undecodable.ts), and whatever the interceptors or the implementation throw.
 */
export function createUnaryHandler<I extends DescMessage, O extends DescMessage>(
  fallback: UniversalHandler,
  impl: UnaryImpl<I, O>,
  options: WireOptions,
): UnaryHandler {
  const method = fallback.method as DescMethodUnary<I, O>;
  const serialization = createMethodSerializationLookup(method, undefined, options.jsonOptions, {
    readMaxBytes: options.readMaxBytes,
    writeMaxBytes: 0xffffffff,
  });
  /** The router's interceptors around the implementation, for one call. */
  const chain = (context: CallContext) =>
    intercepted(options.interceptors, async (req) => {
      const request = req as UnaryRequest<I, O>;
      const message = await impl(request.message, {
        ...context,
        signal: request.signal,
        requestHeader: request.header,
        values: request.contextValues,
      });
      return {
        stream: false,
        service: method.parent,
        method,
        header: context.responseHeader,
        trailer: context.responseTrailer,
        // An implementation may answer with a plain init object (connect-es's normalize).
        message: isMessage(message, method.output) ? message : create(method.output, message),
      } satisfies UnaryResponse<I, O>;
    });

  /** One call, from its parsed-out pieces to the response's pieces. */
  async function run(
    wire: Wire,
    context: CallContext,
    timeoutError: ConnectError | undefined,
    body: AsyncIterable<Uint8Array>,
    contentLength: string | null,
    requestMethod: string,
    url: string,
  ): Promise<Answer> {
    let output: Uint8Array | undefined;
    let error: ConnectError | undefined;
    try {
      if (timeoutError !== undefined) throw timeoutError;
      const data =
        wire.protocol === "connect"
          ? await readAllBytes(body, options.readMaxBytes, contentLength)
          : await readEnvelope(body, options.readMaxBytes);
      // A body that does not decode is the client's error (InvalidArgument), not Internal.
      let message: MessageShape<I>;
      try {
        message = serialization.getI(wire.binary).parse(data);
      } catch (err) {
        throw undecodableAsInvalidArgument(err, method.input);
      }
      const res = (await chain(context)({
        stream: false,
        service: method.parent,
        method,
        requestMethod,
        url,
        signal: context.signal,
        header: context.requestHeader,
        contextValues: context.values,
        message,
      })) as UnaryResponse<I, O>;
      mergeHeaders(res.header, context.responseHeader);
      mergeHeaders(res.trailer, context.responseTrailer);
      output = serialization.getO(wire.binary).serialize(res.message);
    } catch (err) {
      error = wellFormed(toConnectError(err));
    } finally {
      context.abort(error ?? CALL_ENDED);
    }
    return respond(options.jsonOptions ?? {}, wire, context, output, error);
  }

  async function handle(req: UniversalServerRequest): Promise<UniversalServerResponse> {
    const wire = wireOf(req, true);
    if (wire === undefined) return fallback(req);
    const { context, timeoutError } = callContext(req, wire, method, options, true);
    const answer = await run(
      wire,
      context,
      timeoutError,
      req.body as AsyncIterable<Uint8Array>,
      req.header.get("content-length"),
      req.method,
      req.url,
    );
    const { chunk, ...response } = answer;
    return chunk === undefined ? response : { ...response, body: once(chunk) };
  }

  /**
   * The same call served straight from Node's request and response (an HTTP/1.1 or node:http2
   * compat pair), without connect-node's request and response adapters: no `URL`, no
   * AbortController and `close` listener of its own (so no DOMException per call when it ends),
   * no async generators around the body and no promise per write. The call's signal is aborted
   * with Canceled when the response closes before the answer (the client went away). False when
   * the request is not one this handler answers itself (see wireOf): the caller then hands it to
   * {@link UniversalHandler} as connect-fastify would.
   */
  function serveNode(
    req: NodeRequest,
    res: NodeResponse,
    contextValues: ContextValues | undefined,
  ): boolean {
    const headers = req.headers;
    const wire = wireOf(nodeHead(req.method, headers), true);
    if (wire === undefined) return false;
    const url = urlOf(req);
    const { context, timeoutError } = callContext(
      { method: "POST", url, header: new Headers(webHeaderInit(headers)), contextValues },
      wire,
      method,
      options,
      true,
    );
    let answered = false;
    res.once("close", () => {
      if (!answered) context.abort(CLIENT_GONE);
    });
    run(
      wire,
      context,
      timeoutError,
      nodeBody(req),
      headerOf(headers["content-length"]),
      "POST",
      url,
    ).then((answer) => {
      answered = true;
      writeAnswer(res, answer);
    }, onUnexpected);
    return true;
  }

  /**
   * The same call served on a raw node:http2 stream by the lean lane (edge/rpc/lean-lane.ts), which
   * has read its protocol (gRPC, uncompressed) and context values from the request's headers: no
   * compat request and response, no Fastify Request and Reply. The answer's frames, headers and
   * trailers are the ones {@link serveNode} writes through the compat response.
   */
  function serveStream(stream: ServerHttp2Stream, headers: Http2Headers, head: LeanHead): void {
    const url = streamUrl(stream, headers);
    const { context, timeoutError } = callContext(
      {
        method: "POST",
        url,
        header: new Headers(webHeaderInit(headers)),
        contextValues: head.values,
      },
      head.wire,
      method,
      options,
      true,
    );
    let answered = false;
    stream.once("close", () => {
      if (!answered) context.abort(CLIENT_GONE);
    });
    run(
      head.wire,
      context,
      timeoutError,
      nodeBody(stream),
      headerOf(headers["content-length"]),
      "POST",
      url,
    ).then((answer) => {
      answered = true;
      writeStreamAnswer(stream, answer, head);
    }, onUnexpected);
  }

  return Object.assign(standIn(handle, fallback), {
    serveNode,
    serveStream,
  }) satisfies StreamServedHandler;
}

/** A Node request, HTTP/1.1 or node:http2's compat layer. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;
/** A Node response, HTTP/1.1 or node:http2's compat layer. */
export type NodeResponse = ServerResponse | Http2ServerResponse;

/**
 * A handler that can also serve a call from Node's request and response directly (the unary
 * handlers here, SubscribeMessages in edge/rpc/subscribe-handler.ts): `serveNode` is false for a
 * request it leaves to the UniversalHandler (edge/rpc/unary-routes.ts serves both).
 */
export type NodeServedHandler = UniversalHandler & {
  serveNode(req: NodeRequest, res: NodeResponse, contextValues: ContextValues | undefined): boolean;
};

/**
 * A unary handler that can also serve a call from Node's request and response directly, and a
 * gRPC call on a raw HTTP/2 stream (the lean lane).
 */
export type UnaryHandler = NodeServedHandler & StreamServedHandler;

/** The reason a call's signal is aborted with when its client goes before the answer. */
export const CLIENT_GONE = new ConnectError("the client closed the call", Code.Canceled);

/** `run` never rejects (every error is an answer); this is for a bug, not a client. */
export function onUnexpected(err: unknown): void {
  process.emitWarning(err instanceof Error ? err : new Error(String(err)));
}

export function headerOf(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(", ") : value;
}

/** What wireOf reads of a request (method, a body, `header.get`), from Node's headers. */
export function nodeHead(method: string | undefined, headers: IncomingHttpHeaders) {
  return {
    method: method ?? "",
    body: headers,
    // connect-es's header names are capitalised (`Content-Encoding`); Node's are lower case.
    header: { get: (name: string) => headerOf(headers[name.toLowerCase()]) },
  } as unknown as UniversalServerRequest;
}

/** Node's request headers as a web Headers init, without HTTP/2 pseudo-headers. */
export function webHeaderInit(headers: IncomingHttpHeaders): [string, string][] {
  const init: [string, string][] = [];
  for (const key in headers) {
    if (key.charCodeAt(0) === 58 /* ":" */) continue;
    const value = headers[key];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) init.push([key, v]);
    else init.push([key, value]);
  }
  return init;
}

/** The request's URL as connect-node gives it (scheme, authority, path), as a string. */
export function urlOf(req: NodeRequest): string {
  const encrypted = (req.socket as { encrypted?: boolean } | null)?.encrypted === true;
  const authority = "authority" in req ? req.authority : req.headers.host;
  return `${encrypted ? "https" : "http"}://${authority ?? "localhost"}${req.url ?? ""}`;
}

/**
 * A Node request's body as an async iterable of its chunks, read with `data` events (one
 * promise per chunk at most). A request that closes before its end is Canceled.
 */
export function nodeBody(req: NodeRequest | ServerHttp2Stream): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      const chunks: Uint8Array[] = [];
      let ended = false;
      let failure: unknown;
      let waiting: ((result: IteratorResult<Uint8Array>) => void) | undefined;
      let failWaiting: ((err: unknown) => void) | undefined;
      const wake = () => {
        const resolve = waiting;
        const reject = failWaiting;
        if (resolve === undefined || reject === undefined) return;
        if (chunks.length === 0 && failure === undefined && !ended) return;
        waiting = undefined;
        failWaiting = undefined;
        const chunk = chunks.shift();
        if (chunk !== undefined) resolve({ done: false, value: chunk });
        else if (failure !== undefined) reject(failure);
        else resolve({ done: true, value: undefined });
      };
      const onData = (chunk: Uint8Array) => {
        chunks.push(chunk);
        wake();
      };
      const onEnd = () => {
        ended = true;
        stop();
        wake();
      };
      const onError = (err: unknown) => {
        failure ??= err;
        stop();
        wake();
      };
      const onClose = () => {
        if (!ended) onError(CLIENT_GONE);
      };
      const stop = () => {
        req.off("data", onData);
        req.off("end", onEnd);
        req.off("error", onError);
        req.off("close", onClose);
      };
      req.on("data", onData);
      req.on("end", onEnd);
      req.on("error", onError);
      req.on("close", onClose);
      // A `data` listener does not restart a stream something paused before (Fastify does).
      if (req.readableEnded) onEnd();
      else req.resume();
      return {
        next: () =>
          new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
            waiting = resolve;
            failWaiting = reject;
            wake();
          }),
        return: async () => {
          // Stopped early (a limit, an extra envelope): read no more of it.
          if (!ended) {
            stop();
            req.pause();
          }
          return { done: true, value: undefined };
        },
      };
    },
  };
}

/** Writes an answer to a Node response: the head, the one chunk, the trailers, the end. */
function writeAnswer(res: NodeResponse, answer: Answer): void {
  if (res.destroyed || res.writableEnded) return;
  const nodeRes = res as ServerResponse;
  nodeRes.writeHead(answer.status, nodeHeaders(answer.header));
  if (answer.chunk !== undefined) nodeRes.write(answer.chunk);
  if (answer.trailer !== undefined) nodeRes.addTrailers(nodeHeaders(answer.trailer));
  nodeRes.end();
}

/**
 * Writes a gRPC answer on a raw HTTP/2 stream, as {@link writeAnswer} does through the compat
 * response: the head, the one chunk, then the trailers with the end of the stream.
 */
function writeStreamAnswer(stream: ServerHttp2Stream, answer: Answer, head: LeanHead): void {
  if (!streamWritable(stream)) return;
  respondHead(stream, answer.status, answer.header, head.extra);
  if (answer.chunk !== undefined) stream.write(answer.chunk);
  endWithTrailers(stream, answer.trailer);
}

/** Web Headers as Node's outgoing headers (Set-Cookie kept as a list). */
export function nodeHeaders(headers: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [key, value] of headers) {
    if (key === "set-cookie") out[key] = headers.getSetCookie();
    else out[key] = value;
  }
  return out;
}

/**
 * The message of a gRPC or gRPC-Web unary request: a body of exactly one uncompressed envelope,
 * read as it arrives; a length prefix over `readMaxBytes` fails before the rest is read. The
 * errors are connect-es's, word for word (errors.ts's inSettingsTerms names READ_MAX_BYTES).
 */
async function readEnvelope(body: AsyncIterable<Uint8Array>, readMaxBytes: number) {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let length = -1;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (length < 0 && size >= 5) {
      const head = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      length = new DataView(head.buffer, head.byteOffset, 5).getUint32(1);
      if (length > readMaxBytes) {
        throw new ConnectError(
          `message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`,
          Code.ResourceExhausted,
        );
      }
    }
    if (length >= 0 && size >= 5 + length + 5) {
      throw new ConnectError(
        "protocol error: received extra input message for unary method",
        Code.Unimplemented,
      );
    }
  }
  if (size === 0) {
    throw new ConnectError(
      "protocol error: missing input message for unary method",
      Code.Unimplemented,
    );
  }
  if (length < 0 || size !== 5 + length) {
    throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  const whole = chunks.length === 1 ? (chunks[0] as Uint8Array) : Buffer.concat(chunks);
  if (((whole[0] as number) & 0b1) !== 0) {
    // connect-es's words; its code is Internal, connect-go's InvalidArgument
    // (edge/rpc/undecodable.ts).
    throw new ConnectError(
      "received compressed envelope, but do not know how to decompress",
      Code.InvalidArgument,
    );
  }
  return whole.subarray(5);
}

/** A unary answer: status, headers, at most one body chunk, trailers (gRPC). */
interface Answer {
  status: number;
  header: Headers;
  trailer?: Headers;
  chunk?: Uint8Array;
}

function respond(
  jsonOptions: Partial<JsonWriteOptions>,
  wire: Wire,
  context: CallContext,
  output: Uint8Array | undefined,
  error: ConnectError | undefined,
): Answer {
  if (wire.protocol === "connect") {
    // Connect unary: the message, or the error as JSON with its HTTP status; trailers travel as
    // `trailer-` headers.
    let status = 200;
    let body = output as Uint8Array;
    if (error !== undefined) {
      status = connect.codeToHttpStatus(error.code);
      context.responseHeader.set("content-type", connect.contentTypeUnaryJson);
      if (!error.isWireError) mergeNonProtocolHeaders(context.responseHeader, error.metadata);
      body = connect.errorToJsonBytes(error, jsonOptions);
    }
    const header = connect.trailerMux(context.responseHeader, context.responseTrailer);
    header.set("content-length", String(body.byteLength));
    return { status, header, chunk: body };
  }
  grpc.setTrailerStatus(context.responseTrailer, error);
  if (wire.protocol === "grpc") {
    return {
      status: 200,
      header: context.responseHeader,
      trailer: context.responseTrailer,
      ...(output === undefined ? {} : { chunk: encodeEnvelope(0, output) }),
    };
  }
  // gRPC-Web: the trailers are the body's last envelope.
  const trailer = encodeEnvelope(
    grpcWeb.trailerFlag,
    grpcWeb.trailerSerialize(context.responseTrailer),
  );
  const body = output === undefined ? trailer : Buffer.concat([encodeEnvelope(0, output), trailer]);
  return { status: 200, header: context.responseHeader, chunk: body };
}

/** A one-chunk body as a plain async iterable (no generator). */
function once(chunk: Uint8Array): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      let done = false;
      return {
        next: async () => {
          if (done) return { done: true, value: undefined };
          done = true;
          return { done: false, value: chunk };
        },
      };
    },
  };
}
