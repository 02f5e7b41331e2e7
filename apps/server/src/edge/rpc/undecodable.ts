import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type {
  UniversalHandler,
  UniversalServerRequest,
  UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { eachMessage } from "../../policy/each-message.js";
import { inSettingsTerms } from "./errors.js";
import { detectProtocol } from "./protocol.js";

// A request the server cannot decode is the client's fault: InvalidArgument, never Internal.
// connect-es reports three such cases as Internal: a protobuf body that does not parse ("parse
// binary: …"), an envelope flagged compressed in a request without an encoding, and a
// compressed body that does not decompress (a truncated gzip stream). connect-go answers the same
// requests with InvalidArgument ("unmarshal message", "protocol error: received compressed
// message without encoding"), which is what Switchboard follows here.

/** connect-es's messages for a request body it could not decode (connect-es 2.x, verbatim). */
const UNDECODABLE =
  /^(parse binary: |received compressed envelope, but do not know how to decompress|decompression failed|received parsed JSON request body, but content-type indicates binary format)/;

/** Whether `err` is connect-es's Internal error for a request body it could not decode. */
export function isUndecodable(err: unknown): boolean {
  return (
    err instanceof ConnectError && err.code === Code.Internal && UNDECODABLE.test(err.rawMessage)
  );
}

/**
 * `err` as the client's error when it is an undecodable request (InvalidArgument, the original
 * as its cause), its message saying what was expected when `input` (the request's message type)
 * is given and the body was JSON ({@link explainJson}); a refusal naming a connect-es option is
 * reworded to name the setting (errors.ts's inSettingsTerms); anything else unchanged.
 */
export function undecodableAsInvalidArgument(err: unknown, input?: DescMessage): unknown {
  if (!(err instanceof ConnectError)) return err;
  const explained = input === undefined ? undefined : explainJson(err.rawMessage, input);
  if (explained !== undefined) {
    return new ConnectError(explained, Code.InvalidArgument, undefined, undefined, err);
  }
  if (!isUndecodable(err)) return inSettingsTerms(err);
  return new ConnectError(err.rawMessage, Code.InvalidArgument, undefined, undefined, err);
}

/**
 * A JSON request body's decoding error (@bufbuild/protobuf 2.x's fromJsonString, which
 * connect-es reports as "cannot decode message chat.SendMessageRequest from JSON: Array(1)") as
 * a sentence that says what was expected, e.g. `expected a JSON object for
 * chat.SendMessageRequest, got an array`; `key "x" is unknown` also lists the message's fields
 * (JSON names). Undefined for any other message (a nested message's error is left as it is).
 */
export function explainJson(message: string, input: DescMessage): string | undefined {
  const expected = `expected a JSON object for ${input.typeName}`;
  const top = `cannot decode message ${input.typeName} from JSON: `;
  if (message.startsWith(top)) {
    const reason = message.slice(top.length);
    const unknown = /^key "(.*)" is unknown$/s.exec(reason);
    if (unknown !== null) {
      const fields = input.fields.map((f) => f.jsonName).join(", ");
      return `${expected}: key "${unknown[1]}" is unknown (its fields: ${fields})`;
    }
    const got = notAnObject(reason);
    if (got !== undefined) return `${expected}, got ${got}`;
    if (/^(duplicate object key|maximum recursion depth)/.test(reason)) {
      return `${expected}: ${reason}`;
    }
    // What is left is JSON.parse's own error.
    return `${expected}: the body is not JSON (${reason})`;
  }
  const field = `cannot decode field ${input.typeName}.`;
  if (message.startsWith(field)) {
    const rest = /^([A-Za-z0-9_]+) from JSON: (.*)$/s.exec(message.slice(field.length));
    if (rest !== null) {
      const name = input.fields.find((f) => f.name === rest[1])?.jsonName ?? rest[1];
      return `${expected}: field "${name}": ${rest[2]}`;
    }
  }
  return undefined;
}

/** What @bufbuild/protobuf's formatVal wrote for a value that is not an object, in words. */
function notAnObject(shown: string): string | undefined {
  if (/^Array\(\d+\)$/.test(shown)) return "an array";
  if (shown === "null") return "null";
  if (shown === "true" || shown === "false") return `a boolean (${shown})`;
  if (shown === "string") return "a string";
  if (/^".*"$/s.test(shown)) return `a string (${shown})`;
  if (/^-?(\d|Infinity|NaN)[\d.e+-]*$/.test(shown)) return `a number (${shown})`;
  return undefined;
}

/**
 * `error` with a message that is well-formed UTF-16 (a lone surrogate becomes U+FFFD). A JSON
 * parse error quotes the offending character as one UTF-16 code unit, so a body holding a
 * character outside the BMP can make a message with half a surrogate pair; `grpc-message` is
 * percent-encoded with encodeURIComponent, which throws on it, and the call then ended with HTTP
 * 200 and no `grpc-status` at all.
 */
export function wellFormed(error: ConnectError): ConnectError {
  if (error.rawMessage.isWellFormed()) return error;
  const mapped = new ConnectError(
    error.rawMessage.toWellFormed(),
    error.code,
    error.metadata,
    undefined,
    error.cause,
  );
  mapped.details.push(...error.details);
  return mapped;
}

/**
 * Maps an undecodable request message of a streaming call to InvalidArgument where it is read,
 * so the caller, the access log and the metrics all see the same code (and its message made
 * well-formed: {@link wellFormed}). Streaming request
 * messages are parsed lazily, as the handler reads them through the interceptors; put this
 * interceptor first, so that its wrapper sits right on the parsed stream. (Unary requests are
 * parsed before any interceptor runs: see {@link answerUndecodable}.)
 */
export function createUndecodableInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) return next(req);
    const input = req.method.input;
    const error = (err: unknown) => readError(err, input);
    return next({ ...req, message: eachMessage(req.message, { error }) });
  };
}

/** What the handler gets when reading a request message of type `input` fails with `err`. */
function readError(err: unknown, input: DescMessage): unknown {
  const mapped = undecodableAsInvalidArgument(err, input);
  return mapped instanceof ConnectError ? wellFormed(mapped) : mapped;
}

const WRAPPED = Symbol("answerUndecodable");

/**
 * A connect-es unary handler whose answer to an undecodable request says InvalidArgument instead
 * of Internal, in the caller's protocol: Connect (HTTP 400 and the error JSON), gRPC (the
 * `grpc-status` trailer), gRPC-Web (the trailer envelope). connect-es parses a unary request
 * before any interceptor runs, so this is the one place the error can still be mapped. Every
 * other answer passes unchanged.
 */
export function answerUndecodable(handler: UniversalHandler): UniversalHandler {
  if ((handler as { [WRAPPED]?: true })[WRAPPED] === true) return handler;
  const input = handler.method.input;
  const fixTrailer = (trailer: Headers) => fixGrpcStatus(trailer, input);
  const wrapped = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    let res: UniversalServerResponse;
    try {
      res = await handler(req);
    } catch (err) {
      if (!(err instanceof URIError)) throw err;
      return notEncodable(req);
    }
    const contentType = res.header?.get("content-type") ?? "";
    if (res.body === undefined) {
      if (res.trailer !== undefined) fixTrailer(res.trailer);
      return res;
    }
    if (detectProtocol(contentType).protocol === "grpc-web") {
      return { ...res, body: mapChunks(res.body, (chunk) => fixGrpcWebTrailer(chunk, input)) };
    }
    if (res.trailer !== undefined) {
      const trailer = res.trailer;
      return { ...res, body: afterLast(res.body, () => fixTrailer(trailer), trailer) };
    }
    if (res.status >= 400 && contentType.startsWith("application/json")) {
      const body = await readAll(res.body);
      const error = parseConnectError(body);
      if (error === undefined) return { ...res, body: once(body) };
      const mapped = wellFormed(undecodableAsInvalidArgument(error, input) as ConnectError);
      if (mapped === error) return { ...res, body: once(body) };
      const bytes = errorToJsonBytes(mapped, {});
      res.header?.set("content-length", String(bytes.byteLength));
      return { ...res, status: isUndecodable(error) ? 400 : res.status, body: once(bytes) };
    }
    return res;
  };
  return Object.assign(wrapped, {
    [WRAPPED]: true as const,
    protocolNames: handler.protocolNames,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
    requestPath: handler.requestPath,
    service: handler.service,
    method: handler.method,
  });
}

/**
 * The answer to a gRPC or gRPC-Web call whose error connect-es could not put in `grpc-message`
 * (see {@link MESSAGE_NOT_ENCODABLE}): a trailers-only InvalidArgument.
 */
function notEncodable(req: UniversalServerRequest): UniversalServerResponse {
  const contentType = req.header.get("content-type") ?? "application/grpc";
  const status = new Headers({
    "grpc-status": String(Code.InvalidArgument),
    "grpc-message": encodeURIComponent(MESSAGE_NOT_ENCODABLE),
  });
  if (detectProtocol(contentType).protocol === "grpc") {
    return { status: 200, header: new Headers({ "content-type": contentType }), trailer: status };
  }
  const text = `grpc-status: ${Code.InvalidArgument}\r\ngrpc-message: ${encodeURIComponent(MESSAGE_NOT_ENCODABLE)}\r\n`;
  const data = Buffer.from(text, "utf8");
  const head = Buffer.alloc(5);
  head[0] = 0x80;
  head.writeUInt32BE(data.byteLength, 1);
  return {
    status: 200,
    header: new Headers({ "content-type": contentType }),
    body: once(Buffer.concat([head, data])),
  };
}

/**
 * A gRPC status in `trailer` as {@link undecodableAsInvalidArgument} maps its error: the code
 * and the message rewritten in place. Returns whether anything changed.
 */
function fixGrpcStatus(trailer: Headers, input: DescMessage): boolean {
  const code = Number(trailer.get("grpc-status") ?? "0");
  if (!(code > 0)) return false;
  let message = trailer.get("grpc-message") ?? "";
  try {
    message = decodeURIComponent(message);
  } catch {
    // not percent-encoded UTF-8: read as it came
  }
  const mapped = undecodableAsInvalidArgument(new ConnectError(message, code), input);
  if (!(mapped instanceof ConnectError)) return false;
  let changed = false;
  if (mapped.code !== code) {
    trailer.set("grpc-status", String(mapped.code));
    changed = true;
  }
  if (mapped.rawMessage !== message) {
    trailer.set("grpc-message", encodeURIComponent(mapped.rawMessage.toWellFormed()));
    changed = true;
  }
  return changed;
}

/** Rewrites a gRPC-Web trailer envelope (flags 0x80) carrying an error status. */
function fixGrpcWebTrailer(chunk: Uint8Array, input: DescMessage): Uint8Array {
  if (chunk.byteLength < 5 || ((chunk[0] as number) & 0x80) === 0) return chunk;
  const length = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).readUInt32BE(1);
  if (chunk.byteLength !== 5 + length) return chunk;
  const trailer = new Headers();
  for (const line of Buffer.from(chunk.subarray(5)).toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailer.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  if (!fixGrpcStatus(trailer, input)) return chunk;
  let text = "";
  trailer.forEach((value, key) => {
    text += `${key}: ${value}\r\n`;
  });
  const data = Buffer.from(text, "utf8");
  const head = Buffer.alloc(5);
  head[0] = chunk[0] as number;
  head.writeUInt32BE(data.byteLength, 1);
  return Buffer.concat([head, data]);
}

function parseConnectError(body: Uint8Array): ConnectError | undefined {
  try {
    return errorFromJsonBytes(body, undefined, new ConnectError("", Code.Unknown));
  } catch {
    return undefined;
  }
}

/**
 * connect-es's gRPC handlers set `grpc-status`, then percent-encode the error's message into
 * `grpc-message` with encodeURIComponent, which throws URIError on a lone surrogate (a JSON parse
 * error quoting half a character outside the BMP); the call then ended with HTTP 200 and no
 * status. Such a call is finished here instead: gRPC keeps the status already set, with a
 * generic message; gRPC-Web, whose trailer envelope was never made, gets InvalidArgument (the
 * only errors that quote request text are the decoding ones).
 */
const MESSAGE_NOT_ENCODABLE =
  "the request could not be decoded (its error message is not well-formed text)";

async function* mapChunks(
  body: AsyncIterable<Uint8Array>,
  map: (chunk: Uint8Array) => Uint8Array,
): AsyncIterable<Uint8Array> {
  try {
    for await (const chunk of body) yield map(chunk);
  } catch (err) {
    if (!(err instanceof URIError)) throw err;
    const text = `grpc-status: ${Code.InvalidArgument}\r\ngrpc-message: ${encodeURIComponent(MESSAGE_NOT_ENCODABLE)}\r\n`;
    const data = Buffer.from(text, "utf8");
    const head = Buffer.alloc(5);
    head[0] = 0x80;
    head.writeUInt32BE(data.byteLength, 1);
    yield Buffer.concat([head, data]);
  }
}

async function* afterLast(
  body: AsyncIterable<Uint8Array>,
  then: () => void,
  trailer: Headers,
): AsyncIterable<Uint8Array> {
  try {
    yield* body;
  } catch (err) {
    if (!(err instanceof URIError)) throw err;
    if (trailer.get("grpc-status") === null)
      trailer.set("grpc-status", String(Code.InvalidArgument));
    trailer.set("grpc-message", encodeURIComponent(MESSAGE_NOT_ENCODABLE));
  }
  then();
}

async function readAll(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function* once(chunk: Uint8Array): AsyncIterable<Uint8Array> {
  yield chunk;
}
