// The servers under test as the runner starts them: a server that refuses its configuration
// fails at once with its own words (the memory store refuses WORKERS=2), the
// probe reads a Node server's live heap after forced GCs, and the plain grpc-js peer answers
// Health.Check as grpc-node's health package does.
import type http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { HealthCheckRequestSchema } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectH2, envelope, grpcStatus } from "../src/lib/grpc-wire.js";
import { type RunningServer, startServer } from "../src/lib/servers.js";

describe("a server that stops before it listens", () => {
  it("fails at once with the server's own message (the memory store with WORKERS=2)", async () => {
    const started = performance.now();
    await expect(startServer("switchboard", { env: { WORKERS: "2" } })).rejects.toThrow(
      /switchboard stopped before it listened \(exit code \d+\): .*memory store cannot be shared between processes/,
    );
    // Not waitForPort's 30 s.
    expect(performance.now() - started).toBeLessThan(20_000);
  });
});

describe("the plain grpc-js peer", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer("plain-grpc-js");
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("answers Health.Check SERVING over gRPC", async () => {
    const session = connectH2(server.url);
    try {
      const answer = await new Promise<{ status: string; body: Buffer }>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/grpc.health.v1.Health/Check",
          "content-type": "application/grpc",
          te: "trailers",
        });
        const chunks: Buffer[] = [];
        let headers: http2.IncomingHttpHeaders | undefined;
        stream.on("response", (h) => {
          headers = h;
        });
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("trailers", (t) =>
          resolve({ status: grpcStatus(headers, t), body: Buffer.concat(chunks) }),
        );
        stream.on("error", reject);
        stream.end(
          envelope(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {}))),
        );
      });
      expect(answer.status).toBe("0");
      // HealthCheckResponse { status: SERVING (1) }: field 1, varint 1.
      expect([...answer.body.subarray(5)]).toEqual([0x08, 0x01]);
    } finally {
      session.close();
    }
  });

  it("gives its live heap through the probe: memoryUsage before and after forced GCs", async () => {
    const heap = await server.heap();
    expect(heap?.after.heapUsed).toBeGreaterThan(0);
    expect(heap?.after.heapUsed).toBeLessThanOrEqual(heap?.after.heapTotal ?? 0);
    expect(heap?.gcMs).toBeGreaterThan(0);
    // A second reading right after: the heap is already collected, so it barely moves.
    const again = await server.heap();
    expect(again?.after.heapUsed).toBeLessThan((heap?.after.heapUsed ?? 0) * 1.2);
  });
});
