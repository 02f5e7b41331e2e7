// Scenario 2, unary calls: SendMessage, and grpc.health.v1.Health/Check over gRPC. Requests/s
// from h2load (HTTP/2: gRPC, Connect binary, Connect JSON: 10 connections × 10 streams; Connect
// JSON over HTTP/1.1: `--h1`, 50 connections); latency percentiles from a client-side histogram
// (h2load gives none), and every sampled answer checked for success (h2load counts a 200 with
// grpc-status 13 as a success; the probe reads grpc-status).
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type http2 from "node:http2";
import { promisify } from "node:util";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { HealthCheckRequestSchema } from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { connectH2, envelope, grpcStatus } from "../lib/grpc-wire.js";
import { loadNow } from "../lib/machine.js";
import type { UnaryRun } from "../lib/results.js";
import { type ServerKind, type StartOptions, startServer } from "../lib/servers.js";
import { percentile, sleep } from "../lib/stats.js";

const PATH = "/chat.ChatService/SendMessage";
const HEALTH_PATH = "/grpc.health.v1.Health/Check";
const request = create(SendMessageRequestSchema, {
  room: "unary",
  user: "bench",
  content: "hello from the unary benchmark",
});
const proto = toBinary(SendMessageRequestSchema, request);
const json = toJsonString(SendMessageRequestSchema, request);

interface Protocol {
  /** The method's path (default SendMessage's). */
  path?: string;
  /** Content-Type and other request headers. */
  headers: Record<string, string>;
  body: Buffer;
  /** Whether an answer is a success. */
  ok: (
    headers: http2.IncomingHttpHeaders,
    trailers: http2.IncomingHttpHeaders | undefined,
  ) => boolean;
}

const PROTOCOLS: Record<string, Protocol> = {
  "grpc-h2": {
    headers: { "content-type": "application/grpc", te: "trailers" },
    body: envelope(proto),
    ok: (h, t) => Number(h[":status"]) === 200 && grpcStatus(h, t) === "0",
  },
  "connect-proto-h2": {
    headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
    body: Buffer.from(proto),
    ok: (h) => Number(h[":status"]) === 200,
  },
  "connect-json-h2": {
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: Buffer.from(json),
    ok: (h) => Number(h[":status"]) === 200,
  },
  // Health.Check of the whole server (service ""), answered SERVING.
  "grpc-health-h2": {
    path: HEALTH_PATH,
    headers: { "content-type": "application/grpc", te: "trailers" },
    body: envelope(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {}))),
    ok: (h, t) => Number(h[":status"]) === 200 && grpcStatus(h, t) === "0",
  },
};

/** h2load's client for Connect JSON over HTTP/1.1: `--h1` over this many connections. */
export const H1_CONNECTIONS = 50;
/** The load h2load gives every server, as the report names it. */
export const UNARY_LOAD = { h2: "-c10 -m10", h1: `--h1 -c${H1_CONNECTIONS}` } as const;

/** Which protocols each server speaks. */
export const UNARY_MATRIX: Partial<Record<ServerKind, string[]>> = {
  switchboard: [
    "grpc-h2",
    "grpc-health-h2",
    "connect-proto-h2",
    "connect-json-h2",
    "connect-json-h1",
  ],
  "switchboard-sqlite": ["grpc-h2"],
  "plain-grpc-js": ["grpc-h2", "grpc-health-h2"],
  "grpc-js-rooms": ["grpc-h2"],
  // The seed's server registers no health service (Health.Check answers UNIMPLEMENTED).
  "seed-go": ["grpc-h2"],
  "h2-ceiling": ["grpc-h2"],
  "fastify-json": ["connect-json-h1"],
};

export interface UnaryOptions {
  servers: ServerKind[];
  repetitions: number;
  durationS: number;
  start: StartOptions;
  log: (line: string) => void;
}

interface Latencies {
  p50: number;
  p99: number;
  max: number;
  count: number;
  bad: number;
}

/** Closed-loop calls over HTTP/2 with `inFlight` calls at a time, for `durationMs`. */
async function probeH2(
  url: string,
  protocol: Protocol,
  connections: number,
  inFlight: number,
  durationMs: number,
): Promise<Latencies> {
  const sessions = Array.from({ length: connections }, () => connectH2(url));
  const latencies: number[] = [];
  let bad = 0;
  const deadline = performance.now() + durationMs;
  const call = (session: http2.ClientHttp2Session) =>
    new Promise<void>((resolve) => {
      const start = performance.now();
      const stream = session.request({
        ":method": "POST",
        ":path": protocol.path ?? PATH,
        ...protocol.headers,
      });
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      stream.on("response", (h) => {
        headers = h;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("data", () => {});
      stream.on("error", () => {
        bad++;
        resolve();
      });
      stream.on("end", () => {
        latencies.push(performance.now() - start);
        if (!protocol.ok(headers, trailers)) bad++;
        resolve();
      });
      stream.end(protocol.body);
    });
  await Promise.all(
    Array.from({ length: inFlight }, async (_, i) => {
      const session = sessions[i % connections] as http2.ClientHttp2Session;
      while (performance.now() < deadline) await call(session);
    }),
  );
  for (const s of sessions) s.close();
  return summarize(latencies, bad);
}

/** Percentiles of a probe's latencies (ms, sorted here) and its count of bad answers. */
function summarize(latencies: number[], bad: number): Latencies {
  latencies.sort((a, b) => a - b);
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.at(-1) ?? Number.NaN,
    count: latencies.length,
    bad,
  };
}

/**
 * Closed-loop Connect JSON calls over HTTP/1.1 keep-alive, one at a time on each of
 * `connections` connections, for `durationMs`.
 */
async function probeH1(url: string, connections: number, durationMs: number): Promise<Latencies> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let bad = 0;
  const deadline = performance.now() + durationMs;
  const call = () =>
    new Promise<number>((resolve) => {
      const req = http.request(
        `${url}${PATH}`,
        {
          method: "POST",
          agent,
          headers: { "content-type": "application/json", "connect-protocol-version": "1" },
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", () => resolve(0));
      req.end(json);
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < deadline) {
        const start = performance.now();
        const status = await call();
        latencies.push(performance.now() - start);
        if (status !== 200) bad++;
      }
    }),
  );
  agent.destroy();
  return summarize(latencies, bad);
}

/**
 * h2load over 10 connections × 10 streams (HTTP/2), or `--h1` over H1_CONNECTIONS connections:
 * successful requests/s and failures.
 */
async function h2load(
  url: string,
  protocol: Protocol,
  durationS: number,
  h1 = false,
): Promise<{ rps: number; failed: number }> {
  const file = `/tmp/switchboard-bench-body-${process.pid}.bin`;
  writeFileSync(file, protocol.body);
  const headerArgs = Object.entries(protocol.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const { stdout } = await promisify(execFile)(
    "taskset",
    [
      "-c",
      "1",
      "h2load",
      ...(h1 ? ["--h1", "-c", String(H1_CONNECTIONS), "-m", "1"] : ["-c", "10", "-m", "10"]),
      "-D",
      String(durationS),
      "--warm-up-time",
      "1",
      "-d",
      file,
      ...headerArgs,
      `${url}${protocol.path ?? PATH}`,
    ],
    { encoding: "utf8" },
  );
  const finished = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(stdout);
  const requests =
    /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
      stdout,
    );
  const codes = /status codes: (\d+) 2xx/.exec(stdout);
  const succeeded = Number(codes?.[1] ?? requests?.[1] ?? 0);
  const seconds = Number(finished?.[1] ?? durationS);
  return {
    rps: succeeded / seconds,
    failed: Number(requests?.[2] ?? 0) + Number(requests?.[3] ?? 0),
  };
}

/** Connect JSON over HTTP/1.1, as h2load sends it. */
const CONNECT_JSON_H1: Protocol = {
  headers: { "content-type": "application/json", "connect-protocol-version": "1" },
  body: Buffer.from(json),
  ok: (h) => Number(h[":status"]) === 200,
};

/** Measures one protocol of a running server. */
async function measure(
  url: string,
  name: string,
  durationS: number,
): Promise<Pick<UnaryRun, "rps" | "failed" | "serial" | "loaded" | "badAnswers">> {
  if (name === "connect-json-h1") {
    await probeH1(url, 16, 1000); // warm-up
    const serial = await probeH1(url, 1, 1000);
    const loaded = await probeH1(url, 16, 1500);
    const h = await h2load(url, CONNECT_JSON_H1, durationS, true);
    return {
      rps: h.rps,
      failed: h.failed,
      serial,
      loaded: { ...loaded, inFlight: 16 },
      badAnswers: serial.bad + loaded.bad,
    };
  }
  const protocol = PROTOCOLS[name];
  if (protocol === undefined) throw new Error(`unknown protocol ${name}`);
  await probeH2(url, protocol, 4, 16, 1000); // warm-up
  const serial = await probeH2(url, protocol, 1, 1, 1000);
  const loaded = await probeH2(url, protocol, 4, 16, 1500);
  const h = await h2load(url, protocol, durationS);
  return {
    rps: h.rps,
    failed: h.failed,
    serial,
    loaded: { ...loaded, inFlight: 16 },
    badAnswers: serial.bad + loaded.bad,
  };
}

/** A row for a protocol that could not be measured: the reason, no figures. */
function failedRun(server: string, protocol: string, repetition: number, error: string): UnaryRun {
  const none = { p50: Number.NaN, p99: Number.NaN, max: Number.NaN };
  return {
    server,
    protocol,
    repetition,
    rps: Number.NaN,
    failed: 0,
    serial: none,
    loaded: { ...none, inFlight: 0 },
    badAnswers: 0,
    load: loadNow(),
    error,
  };
}

export async function unaryScenario(options: UnaryOptions): Promise<UnaryRun[]> {
  const runs: UnaryRun[] = [];
  const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
  for (let repetition = 1; repetition <= options.repetitions; repetition++) {
    for (const server of options.servers) {
      const protocols = UNARY_MATRIX[server] ?? [];
      let running: Awaited<ReturnType<typeof startServer>>;
      try {
        running = await startServer(server, options.start);
      } catch (err) {
        options.log(`unary ${server} rep ${repetition} failed: ${message(err)}`);
        for (const name of protocols) runs.push(failedRun(server, name, repetition, message(err)));
        continue;
      }
      try {
        for (const name of protocols) {
          const tag = `unary ${server} ${name} rep ${repetition}:`;
          const load = loadNow();
          let run: UnaryRun;
          try {
            run = {
              server,
              protocol: name,
              repetition,
              ...(await measure(running.url, name, options.durationS)),
              load,
            };
          } catch (err) {
            options.log(`${tag} failed: ${message(err)}`);
            runs.push(failedRun(server, name, repetition, message(err)));
            continue;
          }
          runs.push(run);
          options.log(
            `${tag} ${Math.round(run.rps)} req/s (${run.failed} failed)  serial p50 ${run.serial.p50.toFixed(2)} p99 ${run.serial.p99.toFixed(2)} max ${run.serial.max.toFixed(1)} ms  ` +
              `loaded p50 ${run.loaded.p50.toFixed(2)} p99 ${run.loaded.p99.toFixed(2)} ms  bad answers ${run.badAnswers}`,
          );
          await sleep(300);
        }
      } finally {
        await running.stop();
      }
    }
  }
  return runs;
}
