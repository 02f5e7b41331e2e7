// A burst of idle SubscribeMessages streams over raw h2c connections, every byte of each
// connection written in one go the moment it connects: the preface, SETTINGS, a connection
// WINDOW_UPDATE, then HEADERS + DATA (END_STREAM) for each of its streams, from one buffer built
// once (HPACK literals without indexing, so every connection can send the same bytes).
//
// Why not node:http2's client (SubscriberSet in fanout-load.ts): one process that queues 100,000
// requests on 1,000 connecting sessions sends nothing until it has set all of them up; on this
// shared 2-core machine that took 10–25 s, and every connection stayed silent that long. A server
// with a first-byte deadline then (rightly) closes them as silent peers, and the bench measures
// its client. Here the client's cost per connection is one write, so "at once" means at once.
//
// What comes back is read frame by frame without decoding headers: a stream's first DATA frame is
// its welcome; a HEADERS frame with END_STREAM (trailers) or a RST_STREAM ends it; SETTINGS and
// PING are acknowledged; GOAWAY and closed connections are counted.
import net from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { SubscribeRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { envelope } from "./grpc-wire.js";
import { sleep } from "./stats.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
/** The default connection window (RFC 9113 §6.9.2). */
const DEFAULT_WINDOW = 65_535;

/** One HTTP/2 frame (RFC 9113 §4.1). */
function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

/** An HPACK string literal without Huffman coding (RFC 7541 §5.2); values under 127 bytes. */
function hpackString(value: string): Buffer {
  const bytes = Buffer.from(value, "latin1");
  if (bytes.length >= 127) throw new Error(`header value too long for this encoder: ${value}`);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** The request header block of SubscribeMessages over gRPC, stateless HPACK (RFC 7541 §6.2.2). */
function requestHeaders(authority: string): Buffer {
  return Buffer.concat([
    Buffer.from([0x83]), // :method POST (static table 3)
    Buffer.from([0x86]), // :scheme http (static table 6)
    Buffer.from([0x04]), // :path (static name 4), literal without indexing
    hpackString("/chat.ChatService/SubscribeMessages"),
    Buffer.from([0x01]), // :authority (static name 1)
    hpackString(authority),
    Buffer.from([0x0f, 0x10]), // content-type (static name 31 = 15 + 16)
    hpackString("application/grpc"),
    Buffer.from([0x00]), // te: a new name, literal without indexing
    hpackString("te"),
    hpackString("trailers"),
  ]);
}

export interface BurstOptions {
  /** Connections, each opened at once. */
  connections: number;
  /** Streams per connection (stream ids 1, 3, 5, …). */
  streamsPerConnection: number;
  room: string;
  /** The user every subscriber subscribes as (one user: one JOIN, not one per stream). */
  user: string;
  /** SETTINGS_INITIAL_WINDOW_SIZE the client advertises, bytes (default 1 MiB, as SubscriberSet). */
  streamWindow?: number;
  /** The connection's receive window, bytes (default 16 MiB, as SubscriberSet). */
  connectionWindow?: number;
}

/** The bytes one connection sends: preface, SETTINGS, WINDOW_UPDATE and every stream's request. */
export function burstBytes(authority: string, options: BurstOptions): Buffer {
  const streamWindow = options.streamWindow ?? 1 << 20;
  const connectionWindow = options.connectionWindow ?? 16 << 20;
  const settings = Buffer.alloc(12);
  settings.writeUInt16BE(0x2, 0); // SETTINGS_ENABLE_PUSH
  settings.writeUInt32BE(0, 2);
  settings.writeUInt16BE(0x4, 6); // SETTINGS_INITIAL_WINDOW_SIZE
  settings.writeUInt32BE(streamWindow, 8);
  const increment = Buffer.alloc(4);
  increment.writeUInt32BE(connectionWindow - DEFAULT_WINDOW, 0);
  const block = requestHeaders(authority);
  const body = envelope(
    toBinary(
      SubscribeRequestSchema,
      create(SubscribeRequestSchema, { room: options.room, user: options.user }),
    ),
  );
  const parts = [PREFACE, frame(SETTINGS, 0, 0, settings), frame(0x8, 0, 0, increment)];
  for (let i = 0; i < options.streamsPerConnection; i++) {
    const id = 2 * i + 1;
    parts.push(frame(HEADERS, END_HEADERS, id, block), frame(DATA, END_STREAM, id, body));
  }
  return Buffer.concat(parts);
}

/**
 * `connections × streamsPerConnection` idle SubscribeMessages streams, requested at once; counts
 * what comes back. Every socket is opened in the constructor.
 */
export class StreamBurst {
  /** Streams that received their first message (the server's welcome). */
  welcomed = 0;
  /** performance.now() when the connections were opened, and when the last stream was welcomed. */
  readonly openedAt: number;
  allWelcomedAt = Number.NaN;
  /** Streams that ended while they should have stayed idle: `trailers` or `rst:<code>`. */
  readonly ended = new Map<string, number>();
  /** Connections that closed, by how: `goaway:<code>` when a GOAWAY came first, else `closed`. */
  readonly connectionsClosed = new Map<string, number>();
  /** Connections that received a GOAWAY (still open or not). */
  goaways = 0;
  /** performance.now() of the last frame received. */
  lastActivity: number;
  /** Connections whose TCP handshake completed, and when the last one did (performance.now()). */
  connected = 0;
  lastConnectedAt = Number.NaN;
  private readonly sockets: net.Socket[] = [];
  private readonly total: number;

  constructor(
    url: string,
    readonly options: BurstOptions,
  ) {
    const { hostname, port } = new URL(url);
    const bytes = burstBytes(`${hostname}:${port}`, options);
    this.total = options.connections * options.streamsPerConnection;
    this.openedAt = performance.now();
    this.lastActivity = this.openedAt;
    for (let c = 0; c < options.connections; c++) {
      const socket = net.connect(Number(port), hostname);
      socket.setNoDelay(true);
      socket.once("connect", () => {
        socket.write(bytes);
        this.connected++;
        this.lastConnectedAt = performance.now();
      });
      this.watch(socket);
      this.sockets.push(socket);
    }
  }

  /** Every stream that was requested. */
  get streams(): number {
    return this.total;
  }

  /** Streams that ended, in all. */
  get endedTotal(): number {
    let n = 0;
    for (const v of this.ended.values()) n += v;
    return n;
  }

  /**
   * Waits until every stream is welcomed and the server has been quiet for 1 s, or until
   * `timeoutMs`. Unlike SubscriberSet.settle it never throws: read {@link welcomed}.
   * @returns seconds it took.
   */
  async settle(timeoutMs: number): Promise<number> {
    const start = Date.now();
    while (
      (this.welcomed < this.total || performance.now() - this.lastActivity < 1000) &&
      Date.now() - start < timeoutMs
    ) {
      // Every stream that can still be welcomed: none left once every connection closed.
      if (this.closedConnections() === this.options.connections) break;
      await sleep(200);
    }
    return (Date.now() - start) / 1000;
  }

  /** Connections closed so far. */
  closedConnections(): number {
    let n = 0;
    for (const v of this.connectionsClosed.values()) n += v;
    return n;
  }

  close(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  private count(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }

  private watch(socket: net.Socket): void {
    const welcomed = new Uint8Array(this.options.streamsPerConnection);
    let goaway: number | undefined;
    let pending: Buffer | undefined;
    let unacknowledged = 0;
    socket.on("error", () => {});
    socket.once("close", () => {
      this.count(this.connectionsClosed, goaway === undefined ? "closed" : `goaway:${goaway}`);
    });
    socket.on("data", (chunk: Buffer) => {
      this.lastActivity = performance.now();
      const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      let at = 0;
      while (buf.length - at >= 9) {
        const length = buf.readUIntBE(at, 3);
        if (buf.length - at < 9 + length) break;
        const type = buf[at + 3] as number;
        const flags = buf[at + 4] as number;
        const id = buf.readUInt32BE(at + 5) & 0x7fff_ffff;
        const payload = buf.subarray(at + 9, at + 9 + length);
        at += 9 + length;
        const index = (id - 1) / 2;
        switch (type) {
          case DATA:
            if (length > 0 && index >= 0 && welcomed[index] === 0) {
              welcomed[index] = 1;
              if (++this.welcomed === this.total) this.allWelcomedAt = this.lastActivity;
            }
            // Give the connection window back in 1 MiB steps (idle streams get little).
            unacknowledged += length;
            if (unacknowledged >= 1 << 20) {
              const increment = Buffer.alloc(4);
              increment.writeUInt32BE(unacknowledged, 0);
              socket.write(frame(0x8, 0, 0, increment));
              unacknowledged = 0;
            }
            if (flags & END_STREAM) this.count(this.ended, "end_stream");
            break;
          case HEADERS:
            if (flags & END_STREAM) this.count(this.ended, "trailers");
            break;
          case RST_STREAM:
            this.count(this.ended, `rst:${payload.readUInt32BE(0)}`);
            break;
          case SETTINGS:
            if ((flags & ACK) === 0) socket.write(frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
            break;
          case PING:
            if ((flags & ACK) === 0) socket.write(frame(PING, ACK, 0, Buffer.from(payload)));
            break;
          case GOAWAY:
            if (goaway === undefined) this.goaways++;
            goaway = payload.readUInt32BE(4);
            break;
        }
      }
      if (at < buf.length) pending = Buffer.from(buf.subarray(at));
    });
  }
}
