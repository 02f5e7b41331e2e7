// An OTLP/HTTP collector that accepts and discards: the endpoint a server with tracing on
// exports to in the benchmarks, so that what is measured is the server's cost of tracing (spans,
// batching, OTLP encoding, the POST), not a collector's. Runs in the bench process.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { StartOptions } from "./servers.js";

export interface OtlpSink {
  /** `http://127.0.0.1:PORT`, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  /** Export requests received so far (each a batch of spans). */
  requests(): number;
  close(): Promise<void>;
}

export async function startOtlpSink(): Promise<OtlpSink> {
  let requests = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      requests++;
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The environment of a server with tracing on at 100% sampling, exporting OTLP/HTTP protobuf to
 * `sink`. The batch processor's queue is large enough that no span is dropped under a
 * benchmark's rate (the SDK's default, 2048, drops what does not fit): every span's cost counts.
 */
export function tracedEnv(sink: OtlpSink): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint,
    OTEL_TRACES_SAMPLER: "always_on",
    OTEL_SERVICE_NAME: "switchboard-bench",
    OTEL_BSP_MAX_QUEUE_SIZE: "200000",
  };
}

/**
 * `builds` and, for each one named in `traced` (a comma-separated list of build names), the
 * same build again as `<name>+otel` with {@link tracedEnv}; the sink they export to, when any.
 */
export async function withTracedBuilds<E extends { name: string; start: StartOptions }>(
  builds: E[],
  traced: string,
): Promise<{ builds: E[]; sink: OtlpSink | undefined }> {
  const names = traced.split(",").filter((n) => n !== "");
  if (names.length === 0) return { builds, sink: undefined };
  const sink = await startOtlpSink();
  const extra = builds
    .filter((b) => names.includes(b.name))
    .map((b) => ({
      ...b,
      name: `${b.name}+otel`,
      start: { ...b.start, env: { ...b.start.env, ...tracedEnv(sink) } },
    }));
  return { builds: [...builds, ...extra], sink };
}
