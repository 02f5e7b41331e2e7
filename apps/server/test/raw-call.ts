import http from "node:http";
import http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";

/**
 * One RPC made by hand in any of the three protocols, over HTTP/1.1 or h2c, with whatever
 * headers and body bytes a test wants (malformed ones included), and the status a peer reads
 * from the answer: the `grpc-status` of gRPC (trailers, or a trailers-only response) and of
 * gRPC-Web (headers, or the trailer envelope), the HTTP status and error JSON of Connect unary,
 * the end-stream message of Connect streaming.
 */

/** The wire protocol of a raw call. */
export type RawProtocol = "grpc" | "grpc-web" | "connect";

/** What to send. */
export interface RawCall {
  protocol: RawProtocol;
  http: "1.1" | "2";
  /** `/package.Service/Method` (with a query string for a Connect GET). */
  path: string;
  /** Default POST. */
  method?: string;
  /** Request headers (lower-case names), content-type included. */
  headers: Record<string, string>;
  body?: Uint8Array;
  /** Whether the RPC streams its response (Connect: read the end-stream message). */
  streamingResponse: boolean;
  /**
   * Stop reading at the first complete data message (the call is then cancelled) and report
   * `ok`: for a stream that would stay open, such as a subscription.
   */
  stopAtFirstMessage?: boolean;
}

/** What a peer reads from the answer. */
export interface RawAnswer {
  httpStatus: number;
  /** The RPC code as Connect spells it (`ok`, `invalid_argument`, …), or `http <status>`. */
  code: string;
  message: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Connect's name of a code: `invalid_argument`, …; `ok` for 0. */
export function codeString(code: number): string {
  if (code === 0) return "ok";
  const name = Code[code];
  if (name === undefined) return `code ${code}`;
  return name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase());
}

/** One gRPC / Connect envelope: a flags byte, a 4-byte big-endian length, the data. */
export function frame(data: Uint8Array, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(data.byteLength, 1);
  return Buffer.concat([head, data]);
}

/** Splits a body into envelopes as far as it is well-formed. */
export function envelopes(body: Buffer): Array<{ flags: number; data: Buffer }> {
  const out: Array<{ flags: number; data: Buffer }> = [];
  let at = 0;
  while (at + 5 <= body.length) {
    const length = body.readUInt32BE(at + 1);
    if (at + 5 + length > body.length) break;
    out.push({ flags: body[at] as number, data: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

/** Makes the call (h2c: on a session of its own) and reads the answer; at most `timeoutMs`. */
export async function rawCall(
  baseUrl: string,
  call: RawCall,
  timeoutMs = 10_000,
  session?: http2.ClientHttp2Session,
): Promise<RawAnswer> {
  const raw =
    call.http === "2"
      ? await h2(baseUrl, call, timeoutMs, session)
      : await h1(baseUrl, call, timeoutMs);
  return { ...raw, ...statusOf(call, raw) };
}

interface Raw {
  /** Reading stopped at the first data message (stopAtFirstMessage). */
  stopped?: boolean;
  httpStatus: number;
  headers: Record<string, string | string[] | undefined>;
  trailers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function h1(baseUrl: string, call: RawCall, timeoutMs: number): Promise<Raw> {
  return new Promise<Raw>((resolve, reject) => {
    const req = http.request(`${baseUrl}${call.path}`, {
      method: call.method ?? "POST",
      headers: call.headers,
      agent: false,
    });
    const timer = setTimeout(
      () => req.destroy(new Error(`no complete answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on("close", () => clearTimeout(timer));
    req.on("error", reject);
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => {
        chunks.push(c);
        if (call.stopAtFirstMessage === true && res.statusCode === 200 && hasData(chunks)) {
          clearTimeout(timer);
          resolve({
            httpStatus: 200,
            headers: res.headers,
            trailers: {},
            body: Buffer.concat(chunks),
            stopped: true,
          });
          req.destroy();
        }
      });
      res.on("error", reject);
      res.on("end", () =>
        resolve({
          httpStatus: res.statusCode ?? 0,
          headers: res.headers,
          trailers: res.trailers,
          body: Buffer.concat(chunks),
        }),
      );
    });
    req.end(call.body === undefined ? undefined : Buffer.from(call.body));
  });
}

async function h2(
  baseUrl: string,
  call: RawCall,
  timeoutMs: number,
  shared?: http2.ClientHttp2Session,
): Promise<Raw> {
  const session = shared ?? http2.connect(baseUrl);
  try {
    return await new Promise<Raw>((resolve, reject) => {
      session.once("error", reject);
      const stream = session.request({
        ":method": call.method ?? "POST",
        ":path": call.path,
        ...call.headers,
      });
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        headers = h;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      let stopped = false;
      stream.on("data", (c: Buffer) => {
        chunks.push(c);
        if (
          call.stopAtFirstMessage === true &&
          !stopped &&
          Number(headers[":status"]) === 200 &&
          hasData(chunks)
        ) {
          stopped = true;
          stream.close(http2.constants.NGHTTP2_CANCEL);
        }
      });
      // A reset after a complete answer (RFC 9113 §8.1) is not a failure: the answer counts.
      stream.on("error", () => {});
      stream.on("close", () => {
        clearTimeout(timer);
        session.off("error", reject);
        const status = Number(headers[":status"] ?? 0);
        if (status === 0) {
          reject(new Error(`stream closed without an answer (RST_STREAM ${stream.rstCode})`));
          return;
        }
        resolve({ httpStatus: status, headers, trailers, body: Buffer.concat(chunks), stopped });
      });
      stream.end(call.body === undefined ? undefined : Buffer.from(call.body));
    });
  } finally {
    if (shared === undefined) session.close();
  }
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Whether the body so far holds a complete data envelope (flags without 0x02 and 0x80). */
function hasData(chunks: Buffer[]): boolean {
  return envelopes(Buffer.concat(chunks)).some((e) => (e.flags & 0x82) === 0);
}

function statusOf(call: RawCall, raw: Raw): { code: string; message: string } {
  if (raw.stopped === true) return { code: "ok", message: "stream open (stopped reading)" };
  if (call.protocol === "connect") {
    const contentType = first(raw.headers["content-type"]) ?? "";
    if (
      call.streamingResponse &&
      raw.httpStatus === 200 &&
      contentType.startsWith("application/connect+")
    ) {
      const end = envelopes(raw.body).find((e) => (e.flags & 0b10) !== 0);
      if (end === undefined) return { code: "no end-stream message", message: "" };
      const parsed = JSON.parse(end.data.toString("utf8")) as {
        error?: { code?: string; message?: string };
      };
      return parsed.error === undefined
        ? { code: "ok", message: "" }
        : { code: parsed.error.code ?? "missing code", message: parsed.error.message ?? "" };
    }
    if (raw.httpStatus === 200) return { code: "ok", message: "" };
    try {
      const parsed = JSON.parse(raw.body.toString("utf8")) as { code?: unknown; message?: unknown };
      if (typeof parsed.code === "string" && codeFromString(parsed.code) !== undefined) {
        return { code: parsed.code, message: String(parsed.message ?? "") };
      }
    } catch {
      // Not a Connect error body.
    }
    return { code: `http ${raw.httpStatus}`, message: raw.body.toString("utf8").slice(0, 200) };
  }
  // gRPC-Web's trailers are the body's last envelope (flag 0x80), or its headers when
  // trailers-only; gRPC's are HTTP/2 trailers, or its headers when trailers-only.
  let fields: Record<string, string | string[] | undefined> = { ...raw.headers, ...raw.trailers };
  if (call.protocol === "grpc-web") {
    const trailer = envelopes(raw.body).find((e) => (e.flags & 0x80) !== 0);
    if (trailer !== undefined) {
      fields = {};
      for (const line of trailer.data.toString("utf8").split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon > 0)
          fields[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
    }
  }
  const status = first(fields["grpc-status"]);
  if (raw.httpStatus !== 200 || status === undefined) {
    return { code: `http ${raw.httpStatus}`, message: `grpc-status ${status ?? "missing"}` };
  }
  return {
    code: codeString(Number(status)),
    message: decodeURIComponent(first(fields["grpc-message"]) ?? ""),
  };
}
