import http2 from "node:http2";
import { within } from "./support.js";

/**
 * A gRPC call made by hand over node:http2, for what no well-behaved client sends: truncated
 * envelopes, invalid UTF-8, streams dropped halfway, a reader that never reads.
 */

/** One gRPC length-prefixed message: flag byte 0 (uncompressed), 4-byte big-endian length. */
export function envelope(payload: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

/** Splits a gRPC response body into its messages; throws on a partial envelope. */
export function unenvelope(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    if (at + 5 > body.length) throw new Error(`partial envelope prefix at byte ${at}`);
    const length = body.readUInt32BE(at + 1);
    if (at + 5 + length > body.length) throw new Error(`partial envelope at byte ${at}`);
    out.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return out;
}

/** What came back on a raw gRPC stream. */
export interface RawResult {
  headers: http2.IncomingHttpHeaders;
  /** Trailers, or the headers of a trailers-only response. */
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
  /** grpc-status as a number (from trailers, or a trailers-only response). */
  status: number;
  /** grpc-message, percent-decoded. */
  message: string;
}

/** Opens a raw h2c session to `baseUrl`; `settings` go into the client's SETTINGS frame. */
export async function connectH2(
  baseUrl: string,
  settings: http2.Settings = {},
): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(baseUrl, { settings });
  await within(
    new Promise<void>((resolve, reject) => {
      session.once("connect", () => resolve());
      session.once("error", reject);
    }),
    5_000,
    "h2c connect",
  );
  return session;
}

/** Starts a gRPC request on `session` (nothing written yet). */
export function grpcRequest(
  session: http2.ClientHttp2Session,
  path: string,
): http2.ClientHttp2Stream {
  return session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
  });
}

/** Reads a raw gRPC response to its end. */
export function readResponse(
  stream: http2.ClientHttp2Stream,
  timeoutMs = 10_000,
): Promise<RawResult> {
  return within(
    new Promise<RawResult>((resolve, reject) => {
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        headers = h;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", reject);
      stream.on("close", () => {
        const t = trailers ?? headers;
        resolve({
          headers,
          trailers: t,
          body: Buffer.concat(chunks),
          status: Number(t["grpc-status"] ?? Number.NaN),
          message: decodeURIComponent(String(t["grpc-message"] ?? "")),
        });
      });
    }),
    timeoutMs,
    "raw gRPC response",
  );
}

/** One unary or client-streaming gRPC call with the given raw frames, on its own connection. */
export async function rawGrpc(
  baseUrl: string,
  path: string,
  frames: readonly Uint8Array[],
): Promise<RawResult> {
  const session = await connectH2(baseUrl);
  try {
    const stream = grpcRequest(session, path);
    const result = readResponse(stream);
    for (const frame of frames) stream.write(frame);
    stream.end();
    return await result;
  } finally {
    session.close();
  }
}
