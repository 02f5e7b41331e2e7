// A burst of connections, as after a restart: 10,000 SubscribeMessages streams over 100 h2c
// connections (node:http2's client), every byte of them sent while the server's event loop is
// blocked (loop-blocker.mjs), so that all of it waits for the server at once; a second wave of
// connections and a /metrics scrape come right after. Every stream is opened, no connection is
// closed for a deadline, and /metrics is answered while the burst is still being opened. (The
// full-size burst, 100,000 streams over 1,000 connections, is the bench's: bench/README.md.)
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { SubscribeRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockLoop, loopBlockerEnv } from "./blocked-loop.js";
import { type ServerProcess, startServer } from "./harness.js";
import { closedFor, sample, scrape } from "./legit-probe.js";
import { envelope } from "./raw-grpc.js";

const FIRST_BYTE_MS = 1_000;
const BLOCK_MS = 3_000;
const STREAMS_PER_CONNECTION = 100;
const FIRST_WAVE = 100;
const SECOND_WAVE = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `connections` h2c connections of 100 idle SubscribeMessages streams each, requested at once. */
class Burst {
  welcomed = 0;
  /** Streams that ended or failed, and sessions that closed, while they should stay open. */
  readonly failures: string[] = [];
  private readonly sessions: http2.ClientHttp2Session[] = [];

  constructor(baseUrl: string, connections: number) {
    const body = envelope(
      toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { room: "burst", user: "subscriber" }),
      ),
    );
    for (let c = 0; c < connections; c++) {
      const session = http2.connect(baseUrl);
      session.on("error", (err) => this.failures.push(`session: ${err.message}`));
      session.on("goaway", (code) => this.failures.push(`GOAWAY ${code}`));
      this.sessions.push(session);
      for (let s = 0; s < STREAMS_PER_CONNECTION; s++) {
        const stream = session.request({
          ":method": "POST",
          ":path": "/chat.ChatService/SubscribeMessages",
          "content-type": "application/grpc",
          te: "trailers",
        });
        let welcomed = false;
        stream.on("data", () => {
          if (!welcomed) {
            welcomed = true;
            this.welcomed++;
          }
        });
        stream.on("trailers", (t) => this.failures.push(`ended: grpc-status ${t["grpc-status"]}`));
        stream.on("error", (err) => this.failures.push(`stream: ${err.message}`));
        stream.end(body);
      }
    }
  }

  /** Resolves once every session is connected (its bytes are on their way). */
  connected(): Promise<void> {
    return Promise.all(
      this.sessions.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.connecting === false) resolve();
            else s.once("connect", () => resolve());
          }),
      ),
    ).then(() => undefined);
  }

  close(): void {
    for (const s of this.sessions) s.destroy();
  }
}

describe("a burst of 10,000 streams over 100 connections at once", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({
      store: "memory",
      env: {
        FIRST_BYTE_TIMEOUT_MS: String(FIRST_BYTE_MS),
        // Every stream of the burst is one identity from one address.
        MAX_STREAMS_PER_IDENTITY: "0",
        MAX_CONNECTIONS_PER_IP: "0",
        ...loopBlockerEnv(BLOCK_MS),
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("opens every stream, closes no connection for a deadline, and answers /metrics meanwhile", async () => {
    await blockLoop(server);
    const first = new Burst(server.baseUrl, FIRST_WAVE);
    await first.connected();
    // The loop runs again: all of the first wave waits to be read at once.
    const deadline = performance.now() + BLOCK_MS + 5_000;
    while (!server.stderr.includes("loop unblocked")) {
      if (performance.now() > deadline) throw new Error("the server's loop did not run again");
      await sleep(5);
    }
    await sleep(50);
    const second = new Burst(server.baseUrl, SECOND_WAVE);
    const asked = performance.now();
    const metrics = await scrape(server.port);
    const answeredMs = performance.now() - asked;
    const total = (FIRST_WAVE + SECOND_WAVE) * STREAMS_PER_CONNECTION;
    const opening = performance.now();
    while (first.welcomed + second.welcomed < total && performance.now() - opening < 40_000) {
      if (first.failures.length + second.failures.length > 0) break;
      await sleep(50);
    }
    const openedMs = performance.now() - opening;
    const atScrape = sample(metrics, "switchboard_subscribers") ?? Number.NaN;
    console.log(
      `burst: ${first.welcomed + second.welcomed}/${total} streams opened ${Math.round(openedMs)} ms after the scrape; /metrics answered in ${Math.round(answeredMs)} ms with ${atScrape} subscribers`,
    );
    first.close();
    second.close();
    expect([...first.failures, ...second.failures]).toEqual([]);
    expect(first.welcomed + second.welcomed, "streams welcomed within 40 s").toBe(total);
    expect(await closedFor(server.port, "first_byte_timeout")).toBe(0);
    // Answered while the first wave was still being opened, not after it.
    expect(atScrape, "subscribers when /metrics answered").toBeLessThan(
      FIRST_WAVE * STREAMS_PER_CONNECTION,
    );
  });
});
