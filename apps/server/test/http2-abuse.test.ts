// HTTP/2 abuse has a bounded cost, and HTTP/2 limits answer in the caller's protocol:
// - rapid reset (CVE-2023-44487): a burst of HEADERS + RST_STREAM on one h2c connection ends
//   with GOAWAY ENHANCE_YOUR_CALM after the reset budget, a log line naming the peer, and no
//   event-loop stall of more than tens of milliseconds (the server's own
//   nodejs_eventloop_lag_max_seconds);
// - 150 small header fields are served under MAX_HEADER_BYTES and answered 431 /
//   resource_exhausted over it, never reset (node:http2's own cap is 128 fields);
// - a body over READ_MAX_BYTES over h2c is answered 429 / resource_exhausted before the stream
//   is ended, so curl reads it, and the refusal is logged.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { closedFor, LegitProbe, sample, scrape } from "./legit-probe.js";
import { within } from "./support.js";

const run = promisify(execFile);

/** The default rapid-reset budget (HTTP2_RESET_BURST). */
const RESET_BURST = 50;
/**
 * What one burst may cost the server, from its own /metrics. The aim is a stall of about 50 ms.
 * `process_cpu_seconds_total` grows by the work a burst makes (20–50 ms here, scrapes and the
 * legitimate calls included). `nodejs_eventloop_lag_max_seconds` also counts time the process
 * waits for a core: 15–50 ms on an idle machine, at times 100–250 ms on this shared 2-core one
 * while other suites run. So the typical (median) burst must stay near the aim, and no burst may
 * come near the stall before the reset budget: 0.4–1.9 s, with about 0.5 s of CPU. A burst's CPU
 * reached 0.21 s once with the full suite running beside two other workers' loads, so its bound
 * is 0.3 s: still well under the ~0.5 s of the unbounded burst.
 */
const MEDIAN_STALL_S = 0.1;
const MAX_STALL_S = 0.3;
const MAX_BURST_CPU_S = 0.3;

/**
 * One h2c connection that opens `count` streams and cancels each at once (HEADERS, then
 * RST_STREAM CANCEL), in a tight loop, as the rapid-reset attack does.
 */
async function rapidReset(
  port: number,
  count: number,
  waitMs = 5_000,
  contentType = "application/json",
): Promise<{ goaway: number | undefined; lastStreamId: number; sent: number }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  let goaway: number | undefined;
  let lastStreamId = -1;
  session.on("goaway", (code, last) => {
    goaway = code;
    lastStreamId = last;
  });
  let sent = 0;
  for (let i = 0; i < count && !session.closed && !session.destroyed; i++) {
    const stream = session.request({
      ":method": "POST",
      ":path": "/chat.ChatService/SendMessage",
      "content-type": contentType,
    });
    stream.on("error", () => {});
    stream.close(http2.constants.NGHTTP2_CANCEL);
    sent++;
  }
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, waitMs);
    session.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  session.destroy();
  return { goaway, lastStreamId, sent };
}

/** An HTTP/2 frame: 9-byte header (length, type, flags, stream id) and the payload. */
function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/**
 * A raw h2c connection that sends `count` malformed requests (a HEADERS frame with `:method` alone,
 * each on a new stream), and reads until the server closes or 3 s pass: the GOAWAY it got, if any.
 */
async function malformedRequests(
  port: number,
  count: number,
): Promise<{ goaway: { lastStreamId: number; code: number } | undefined; closed: boolean }> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let received = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
  });
  const parts = [
    Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"),
    frame(4, 0, 0, Buffer.alloc(0)),
  ];
  // 0x82: HPACK's static-table `:method: GET`; END_STREAM | END_HEADERS.
  for (let i = 0; i < count; i++) parts.push(frame(1, 0x5, 2 * i + 1, Buffer.from([0x82])));
  socket.write(Buffer.concat(parts));
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 3_000);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.destroy();
  let goaway: { lastStreamId: number; code: number } | undefined;
  for (let at = 0; at + 9 <= received.length; at += 9 + received.readUIntBE(at, 3)) {
    if (received[at + 3] === 7) {
      goaway = {
        lastStreamId: received.readUInt32BE(at + 9),
        code: received.readUInt32BE(at + 13),
      };
    }
  }
  return { goaway, closed };
}

/** One h2c request on its own connection: the response headers, END_STREAM on them, the body. */
async function h2request(
  port: number,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer | string,
): Promise<{
  headers: http2.IncomingHttpHeaders;
  endStream: boolean;
  body: string;
  rstCode: number | undefined;
}> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  try {
    const stream = session.request({ ":method": "POST", ...headers });
    let response: http2.IncomingHttpHeaders = {};
    let endStream = false;
    let text = "";
    stream.on("response", (h, flags) => {
      response = h;
      endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      text += chunk;
    });
    stream.on("error", () => {});
    stream.end(body);
    await within(
      new Promise<void>((resolve) => stream.once("close", () => resolve())),
      10_000,
      "the end of the HTTP/2 stream",
    );
    return { headers: response, endStream, body: text, rstCode: stream.rstCode };
  } finally {
    session.destroy();
  }
}

/** 150 header fields of 10 bytes each (`x-h-NNN: vvv`). */
function manyHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i < 150; i++) headers[`x-h-${String(i).padStart(3, "0")}`] = "vvv";
  return headers;
}

/** ListRooms through @grpc/grpc-js with `metadata`: the status it reports. */
function grpcJsListRooms(port: number, metadata: grpc.Metadata): Promise<grpc.StatusObject> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise<grpc.StatusObject>((resolve) => {
    const call = client.makeUnaryRequest(
      "/chat.ChatService/ListRooms",
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      metadata,
      () => {},
    );
    call.on("status", (status: grpc.StatusObject) => resolve(status));
  }).finally(() => client.close());
}

function manyMetadata(): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [name, value] of Object.entries(manyHeaders())) metadata.set(name, value);
  return metadata;
}

describe("HTTP/2 with default settings", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ store: "memory" });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("ends a rapid-reset burst with GOAWAY ENHANCE_YOUR_CALM, without stalling the event loop", async () => {
    // Warm-up: one burst, so that the paths it runs through are compiled (and the heap grown)
    // before the stall is measured. On a cold process the first burst stalls up to ~160 ms.
    const warmUp = await rapidReset(server.port, 3_000);
    // What the peer reads: GOAWAY ENHANCE_YOUR_CALM. On a 2-core machine saturated by other
    // processes the client at times sees the connection end before it has read the frame (about
    // 1 burst in 9 with five busy processes); the server-side record (a warn line naming the
    // peer, the close counted as rapid_reset) is asserted for every burst below.
    const goaways = [warmUp.goaway];
    const probe = new LegitProbe(server.port);
    // Reads (and resets) the event-loop delay histogram: the next scrape's max is the burst's.
    await scrape(server.port);
    const stalls: number[] = [];
    const cpu: number[] = [];
    // An attacker repeats on new connections; each one costs the same bounded amount.
    for (let round = 0; round < 3; round++) {
      const cpuBefore = sample(await scrape(server.port), "process_cpu_seconds_total") ?? 0;
      // Connect streams go through Fastify; gRPC SendMessage streams to the lean lane
      // (edge/rpc/lean-lane.ts): the same budget and bounds for both.
      const contentType = round === 1 ? "application/grpc" : "application/json";
      const attack = await rapidReset(server.port, 3_000, 5_000, contentType);
      const text = await scrape(server.port);
      stalls.push(sample(text, "nodejs_eventloop_lag_max_seconds") ?? 1);
      cpu.push((sample(text, "process_cpu_seconds_total") ?? 0) - cpuBefore);
      goaways.push(attack.goaway);
      expect(attack.sent).toBeGreaterThan(RESET_BURST);
    }
    const result = await probe.stop();
    const warnings = server.records().filter((r) => r.msg.startsWith("HTTP/2 rapid reset"));
    console.log(
      `rapid reset: resets before GOAWAY ${warnings.map((w) => w.resets).join(", ")}; longest event-loop stall per burst ${stalls.map((s) => `${Math.round(s * 1000)} ms`).join(", ")}; server CPU per burst ${cpu.map((s) => `${Math.round(s * 1000)} ms`).join(", ")}; legit calls ${result.served}, slowest ${Math.round(result.maxMs)} ms`,
    );
    const codes = goaways.filter((code) => code !== undefined);
    expect(new Set(codes)).toEqual(new Set([http2.constants.NGHTTP2_ENHANCE_YOUR_CALM]));
    expect(codes.length).toBeGreaterThanOrEqual(3);
    expect(warnings).toHaveLength(4);
    for (const w of warnings) {
      expect(w.peer).toMatch(/^127\.0\.0\.1:\d+$/);
      // The budget refills at HTTP2_RESET_RATE (10/s) while the burst is read.
      expect(w.resets).toBeLessThanOrEqual(RESET_BURST + 10);
    }
    for (const stall of stalls) expect(stall).toBeLessThan(MAX_STALL_S);
    expect([...stalls].sort((x, y) => x - y)[1]).toBeLessThan(MEDIAN_STALL_S);
    for (const seconds of cpu) expect(seconds).toBeLessThan(MAX_BURST_CPU_S);
    expect(await closedFor(server.port, "rapid_reset")).toBe(4);
    expect(result.failures).toEqual([]);
    expect(result.maxMs).toBeLessThan(1_000);
  });

  it("serves 150 header fields of 10 bytes (the byte cap is the only cap a peer meets)", async () => {
    const connect = await h2request(
      server.port,
      {
        ":path": "/chat.ChatService/ListRooms",
        "content-type": "application/json",
        ...manyHeaders(),
      },
      "{}",
    );
    expect(connect.headers[":status"]).toBe(200);
    const status = await grpcJsListRooms(server.port, manyMetadata());
    expect(status.code).toBe(grpc.status.OK);
  });

  it("cancelling streams that lived a while is no rapid reset", async () => {
    const before = await closedFor(server.port, "rapid_reset");
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => {});
    let goaway: number | undefined;
    session.on("goaway", (code) => {
      goaway = code;
    });
    // Server streams that answered (SYSTEM welcome), then cancelled: 3x the reset budget.
    const streams = Array.from({ length: RESET_BURST * 3 }, (_, i) => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/chat.ChatService/SubscribeMessages",
        "content-type": "application/connect+json",
      });
      stream.on("error", () => {});
      const body = Buffer.from(JSON.stringify({ room: `cancel-${i}`, user: "u" }));
      const head = Buffer.alloc(5);
      head.writeUInt32BE(body.length, 1);
      stream.end(Buffer.concat([head, body]));
      return new Promise<http2.ClientHttp2Stream>((resolve) =>
        stream.once("data", () => resolve(stream)),
      );
    });
    const opened = await Promise.all(streams);
    // Subscriptions that lived a while (over RAPID_RESET_MS, 500 ms), then all cancelled at once.
    await new Promise((r) => setTimeout(r, 700));
    for (const stream of opened) stream.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((r) => setTimeout(r, 300));
    expect(goaway).toBeUndefined();
    expect(session.destroyed).toBe(false);
    session.destroy();
    expect(await closedFor(server.port, "rapid_reset")).toBe(before);
  });
  it("closes a connection after 100 invalid frames (maxSessionInvalidFrames), not before", async () => {
    const probe = new LegitProbe(server.port);
    const few = await malformedRequests(server.port, 50);
    expect(few.closed).toBe(false);
    expect(few.goaway).toBeUndefined();
    const before = await closedFor(server.port, "invalid_frames");
    const many = await malformedRequests(server.port, 150);
    expect(many.closed).toBe(true);
    expect(many.goaway).toBeDefined();
    // The 101st malformed request (stream 201) is the last one the server looked at.
    expect(many.goaway?.lastStreamId).toBeLessThanOrEqual(2 * 102 + 1);
    const result = await probe.stop();
    expect(result.failures).toEqual([]);
    expect(result.maxMs).toBeLessThan(1_000);
    expect(await closedFor(server.port, "invalid_frames")).toBe(before + 1);
  });
});

describe("HTTP/2 limits that answer (MAX_HEADER_BYTES=4096)", () => {
  let server: ServerProcess;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-h2-"));
    server = await startServer({ store: "memory", env: { MAX_HEADER_BYTES: "4096" } });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers 150 header fields over the byte cap with 431 (Connect), never a reset", async () => {
    const answer = await h2request(
      server.port,
      {
        ":path": "/chat.ChatService/ListRooms",
        "content-type": "application/json",
        ...manyHeaders(),
      },
      "{}",
    );
    expect(answer.headers[":status"]).toBe(431);
    expect(answer.rstCode).not.toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(JSON.parse(answer.body)).toEqual({
      code: "resource_exhausted",
      message: expect.stringMatching(
        /^request headers are \d+ bytes, over MAX_HEADER_BYTES \(4096\)$/,
      ),
    });
  });

  it("answers them with a trailers-only resource_exhausted for gRPC (raw and grpc-js)", async () => {
    // ListRooms goes through Fastify; SendMessage and SubscribeMessages over gRPC to the lean
    // lane (edge/rpc/lean-lane.ts): the transport's cap answers both alike.
    for (const path of [
      "/chat.ChatService/ListRooms",
      "/chat.ChatService/SendMessage",
      "/chat.ChatService/SubscribeMessages",
    ]) {
      const answer = await h2request(
        server.port,
        { ":path": path, "content-type": "application/grpc", ...manyHeaders() },
        Buffer.alloc(5),
      );
      expect(answer.headers[":status"], path).toBe(200);
      expect(answer.headers["grpc-status"], path).toBe("8");
      // Trailers-only: the status and the end of the stream in the one HEADERS frame.
      expect(answer.endStream, path).toBe(true);
    }
    const status = await grpcJsListRooms(server.port, manyMetadata());
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toMatch(
      /^request headers are \d+ bytes, over MAX_HEADER_BYTES \(4096\)$/,
    );
  });

  it("answers an oversized body over h2c with 429 before ending the stream (curl), and logs it", async () => {
    const probe = new LegitProbe(server.port);
    for (const size of [200_000, 1_000_000]) {
      const file = join(dir, `body-${size}.json`);
      writeFileSync(
        file,
        JSON.stringify({ room: "general", user: "u", content: "a".repeat(size) }),
      );
      for (let attempt = 0; attempt < 5; attempt++) {
        const { stdout } = await run(
          "curl",
          [
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            "\\n%{http_code}",
            "-H",
            "content-type: application/json",
            "--data-binary",
            `@${file}`,
            `${`http://127.0.0.1:${server.port}`}/chat.ChatService/SendMessage`,
          ],
          { timeout: 10_000 },
        );
        const [body, code] = stdout.split("\n");
        expect(code, `${size} bytes, attempt ${attempt}`).toBe("429");
        expect(JSON.parse(body as string)).toMatchObject({ code: "resource_exhausted" });
      }
    }
    const result = await probe.stop();
    expect(result.failures).toEqual([]);
    expect(result.maxMs).toBeLessThan(1_000);
    const logged = server
      .records()
      .filter((r) => r.msg === "request refused before its body was read");
    expect(logged.length).toBeGreaterThanOrEqual(10);
    expect(logged[0]).toMatchObject({
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      path: "/chat.ChatService/SendMessage",
      status: 429,
      reason: expect.stringMatching(/^request body of \d+ bytes is over READ_MAX_BYTES \(65536\)$/),
    });
  });

  it("answers an oversized gRPC message with resource_exhausted (grpc-js)", async () => {
    const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      const status = await within(
        new Promise<grpc.StatusObject>((resolve) => {
          const call = client.makeUnaryRequest(
            "/chat.ChatService/SendMessage",
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.alloc(1_000_000, 0x0a),
            () => {},
          );
          call.on("status", (s: grpc.StatusObject) => resolve(s));
        }),
        10_000,
        "grpc-js's status for a 1 MB message",
      );
      expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      client.close();
    }
  });
});
