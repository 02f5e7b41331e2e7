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
import { undecodableAsInvalidArgument, wellFormed } from "../rpc/undecodable.js";
import { toConnectError } from "./errors.js";
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
 * rpc/undecodable.ts), and whatever the interceptors or the implementation throw.
 */
export function createUnaryHandler<I extends DescMessage, O extends DescMessage>(
  fallback: UniversalHandler,
  impl: UnaryImpl<I, O>,
  options: WireOptions,
): UniversalHandler {
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

  async function handle(req: UniversalServerRequest): Promise<UniversalServerResponse> {
    const wire = wireOf(req, true);
    if (wire === undefined) return fallback(req);
    const { context, timeoutError } = callContext(req, wire, method, options, true);
    let output: Uint8Array | undefined;
    let error: ConnectError | undefined;
    try {
      if (timeoutError !== undefined) throw timeoutError;
      const body = req.body as AsyncIterable<Uint8Array>;
      const data =
        wire.protocol === "connect"
          ? await readAllBytes(body, options.readMaxBytes, req.header.get("content-length"))
          : await readEnvelope(body, options.readMaxBytes);
      // A body that does not decode is the client's error (InvalidArgument), not Internal.
      let message: MessageShape<I>;
      try {
        message = serialization.getI(wire.binary).parse(data);
      } catch (err) {
        throw undecodableAsInvalidArgument(err);
      }
      const res = (await chain(context)({
        stream: false,
        service: method.parent,
        method,
        requestMethod: req.method,
        url: req.url,
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

  return standIn(handle, fallback);
}

/**
 * The message of a gRPC or gRPC-Web unary request: a body of exactly one uncompressed envelope,
 * read as it arrives; a length prefix over `readMaxBytes` fails before the rest is read. The
 * errors are connect-es's, word for word.
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
    // connect-es's words; its code is Internal, connect-go's InvalidArgument (rpc/undecodable.ts).
    throw new ConnectError(
      "received compressed envelope, but do not know how to decompress",
      Code.InvalidArgument,
    );
  }
  return whole.subarray(5);
}

function respond(
  jsonOptions: Partial<JsonWriteOptions>,
  wire: Wire,
  context: CallContext,
  output: Uint8Array | undefined,
  error: ConnectError | undefined,
): UniversalServerResponse {
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
    return { status, header, body: once(body) };
  }
  grpc.setTrailerStatus(context.responseTrailer, error);
  if (wire.protocol === "grpc") {
    return {
      status: 200,
      header: context.responseHeader,
      trailer: context.responseTrailer,
      ...(output === undefined ? {} : { body: once(encodeEnvelope(0, output)) }),
    };
  }
  // gRPC-Web: the trailers are the body's last envelope.
  const trailer = encodeEnvelope(
    grpcWeb.trailerFlag,
    grpcWeb.trailerSerialize(context.responseTrailer),
  );
  const body = output === undefined ? trailer : Buffer.concat([encodeEnvelope(0, output), trailer]);
  return { status: 200, header: context.responseHeader, body: once(body) };
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
