// The raw burst client counts what it claims (a stream's welcome, a stream the server ends or
// resets, a GOAWAY, a closed connection) and answers SETTINGS and PING; and the servers it
// measures accept its requests (plain grpc-js, and Switchboard with /metrics watched meanwhile).
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamBurst } from "../src/lib/h2c-burst.js";
import { MetricsWatch } from "../src/lib/metrics-watch.js";
import { type RunningServer, startServer } from "../src/lib/servers.js";

/** One HTTP/2 frame (RFC 9113 §4.1). */
function frame(type: number, flags: number, streamId: number, payload = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

describe("StreamBurst against a raw HTTP/2 peer", () => {
  let server: net.Server;
  let url: string;
  /** Everything the server read from each connection. */
  const received: Buffer[][] = [];
  beforeAll(async () => {
    server = net.createServer((socket) => {
      const chunks: Buffer[] = [];
      received.push(chunks);
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      socket.on("error", () => {});
      const rst = Buffer.alloc(4);
      rst.writeUInt32BE(8, 0); // CANCEL
      const goaway = Buffer.alloc(8);
      goaway.writeUInt32BE(5, 0); // last stream id 5, NO_ERROR
      socket.write(
        Buffer.concat([
          frame(0x4, 0, 0), // SETTINGS
          frame(0x6, 0, 0, Buffer.from("pingpong")), // PING
          frame(0x3, 0, 1, rst), // stream 1 reset
          frame(0x1, 0x4, 3, Buffer.from([0x88])), // stream 3: HEADERS :status 200
          frame(0x0, 0, 3, Buffer.from([0, 0, 0, 0, 1, 0x0a])), // its welcome
          frame(0x1, 0x5, 5, Buffer.from([0x88])), // stream 5: trailers-only
          frame(0x7, 0, 0, goaway),
        ]),
      );
      setTimeout(() => socket.end(), 200);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("counts welcomes, ended and reset streams, GOAWAY and closed connections, and acknowledges SETTINGS and PING", async () => {
    const burst = new StreamBurst(url, {
      connections: 1,
      streamsPerConnection: 3,
      room: "r",
      user: "u",
    });
    await burst.settle(3_000);
    expect(burst.streams).toBe(3);
    expect(burst.welcomed).toBe(1);
    expect(Object.fromEntries(burst.ended)).toEqual({ "rst:8": 1, trailers: 1 });
    expect(burst.goaways).toBe(1);
    expect(Object.fromEntries(burst.connectionsClosed)).toEqual({ "goaway:0": 1 });
    const sent = Buffer.concat(received[0] ?? []);
    // The preface and the requests, in one go, then the two acknowledgements.
    expect(sent.subarray(0, 24).toString("latin1")).toBe("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    expect(sent.includes(frame(0x4, 0x1, 0))).toBe(true);
    expect(sent.includes(frame(0x6, 0x1, 0, Buffer.from("pingpong")))).toBe(true);
    burst.close();
  });
});

describe("StreamBurst against the servers it measures", () => {
  const servers: RunningServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  it("opens idle streams on plain grpc-js", async () => {
    const server = await startServer("plain-grpc-js");
    servers.push(server);
    const burst = new StreamBurst(server.url, {
      connections: 5,
      streamsPerConnection: 100,
      room: "idle",
      user: "subscriber",
    });
    await burst.settle(30_000);
    expect(burst.welcomed).toBe(500);
    expect(burst.endedTotal).toBe(0);
    expect(burst.closedConnections()).toBe(0);
    burst.close();
  });

  it("opens idle streams on Switchboard while /metrics is watched", async () => {
    const server = await startServer("switchboard");
    servers.push(server);
    const watch = new MetricsWatch(server.url, 100);
    const burst = new StreamBurst(server.url, {
      connections: 5,
      streamsPerConnection: 100,
      room: "idle",
      user: "subscriber",
    });
    await burst.settle(30_000);
    const metrics = await watch.stop();
    expect(burst.welcomed).toBe(500);
    expect(burst.endedTotal).toBe(0);
    expect(burst.closedConnections()).toBe(0);
    expect(metrics.scrapes.length).toBeGreaterThan(0);
    expect(metrics.answered).toBe(metrics.scrapes.filter((s) => !s.pending).length);
    burst.close();
  });
});
