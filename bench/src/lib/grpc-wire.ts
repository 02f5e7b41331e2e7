// gRPC framing by hand for the raw node:http2 clients (five-byte envelope, grpc-status).
import http2 from "node:http2";

/** Wraps one message in a gRPC envelope (uncompressed). */
export function envelope(payload: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, 5);
  return frame;
}

/** Splits a gRPC byte stream into message payloads. */
export class EnvelopeReader {
  private buffer: Buffer = Buffer.alloc(0);
  constructor(private readonly onMessage: (payload: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    while (this.buffer.length >= 5) {
      const length = this.buffer.readUInt32BE(1);
      if (this.buffer.length < 5 + length) break;
      this.onMessage(this.buffer.subarray(5, 5 + length));
      this.buffer = this.buffer.subarray(5 + length);
    }
  }
}

/** Request headers of a gRPC call to chat.ChatService. */
export function grpcHeaders(method: string): http2.OutgoingHttpHeaders {
  return {
    ":method": "POST",
    ":path": `/chat.ChatService/${method}`,
    "content-type": "application/grpc",
    te: "trailers",
  };
}

/** The grpc-status of a finished call: from trailers, or from headers (trailers-only). */
export function grpcStatus(
  headers: http2.IncomingHttpHeaders | undefined,
  trailers: http2.IncomingHttpHeaders | undefined,
): string {
  return String(trailers?.["grpc-status"] ?? headers?.["grpc-status"] ?? "missing");
}

/** An h2c session with large windows (1 MiB per stream, 16 MiB per connection). */
export function connectH2(url: string, streamWindow = 1 << 20): http2.ClientHttp2Session {
  const session = http2.connect(url, {
    settings: { initialWindowSize: streamWindow },
    maxSessionMemory: 256,
  });
  session.on("connect", () => session.setLocalWindowSize(16 << 20));
  session.on("error", () => {});
  return session;
}
