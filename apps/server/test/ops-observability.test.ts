// What an operator's tools see: gRPC health checking, reflection driven by `buf curl` without a
// schema (over gRPC and over Connect), /metrics parsed as Prometheus text with counters that
// match the calls made, and one access-log line per RPC, tailed by StreamLogs, with no token.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { type LogEntry, LogLevel, LogService } from "@switchboard/proto/gen/chat/log_pb";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "@switchboard/proto/gen/grpc/health/v1/health_pb";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerProcess } from "./harness.js";
import { codeName, connectErrorOf, StreamReader, uniqueRoom } from "./support.js";
import { toolPath } from "./tools.js";

const run = promisify(execFile);
const BUF = toolPath("buf");

/** One sample of the Prometheus text format: name, labels, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (version 0.0.4); fails on a malformed line. */
function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not Prometheus text: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = l[2] as string;
    }
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sum of `name` over samples whose labels include `match`. */
function total(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name)
    .filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

describe("operability", () => {
  let server: ServerProcess;
  const SECRET = "observability-secret-0123456789abcdef";
  let token: string;
  beforeAll(async () => {
    server = await ServerProcess.start({
      store: "memory",
      env: { AUTH_JWT_SECRET: SECRET, CORS_ORIGINS: "https://app.example.com" },
    });
    token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("olivia")
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));
  });
  afterAll(async () => {
    await server?.close();
  });

  it("answers gRPC health checks for the server and each service", async () => {
    for (const protocol of ["grpc", "connect"] as const) {
      const health = createClient(
        Health,
        createNodeTransport({ baseUrl: server.baseUrl, protocol }),
      );
      for (const service of ["", "chat.ChatService", "chat.LogService"]) {
        expect((await health.check({ service })).status, `${protocol} ${service}`).toBe(
          Status.SERVING,
        );
      }
      const err = await connectErrorOf(health.check({ service: "no.Such" }));
      expect(codeName(err.code)).toBe("NotFound");
    }
    const health = createClient(
      Health,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc" }),
    );
    const watch = new StreamReader((signal) => health.watch({ service: "no.Such" }, { signal }));
    expect((await watch.count(1))[0]?.status).toBe(Status.SERVICE_UNKNOWN);
    watch.cancel();
  });

  it("answers CORS preflights for the allowed origin only, Authorization included", async () => {
    const preflight = (origin: string) =>
      fetch(`${server.baseUrl}/chat.ChatService/SendMessage`, {
        method: "OPTIONS",
        headers: {
          Origin: origin,
          "Access-Control-Request-Method": "POST",
          "Access-Control-Request-Headers": "authorization,content-type,connect-protocol-version",
        },
      });
    const allowed = await preflight("https://app.example.com");
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(allowed.headers.get("access-control-allow-headers")?.toLowerCase()).toContain(
      "authorization",
    );
    const other = await preflight("https://elsewhere.example");
    expect(other.headers.get("access-control-allow-origin")).toBe(null);
  });

  it("serves /healthz and /readyz", async () => {
    const healthz = await fetch(`${server.baseUrl}/healthz`);
    expect([healthz.status, await healthz.text()]).toEqual([200, "ok\n"]);
    const readyz = await fetch(`${server.baseUrl}/readyz`);
    expect([readyz.status, await readyz.text()]).toEqual([200, "ok\n"]);
  });

  it.each([
    ["gRPC", ["--protocol", "grpc", "--http2-prior-knowledge"]],
    ["Connect", []],
  ])(
    "lets buf curl list and call every method through reflection over %s",
    async (_name, flags) => {
      const list = await run(BUF, ["curl", ...flags, "--list-methods", server.baseUrl], {
        timeout: 20_000,
      });
      const methods = list.stdout.trim().split("\n");
      for (const m of [
        "chat.ChatService/SendMessage",
        "chat.ChatService/SubscribeMessages",
        "chat.ChatService/UploadMessages",
        "chat.ChatService/Chat",
        "chat.ChatService/StreamMetrics",
        "chat.ChatService/GetHistory",
        "chat.ChatService/ListRooms",
        "chat.ChatService/ListMembers",
        "chat.LogService/StreamLogs",
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
      ]) {
        expect(methods).toContain(m);
      }
      const room = uniqueRoom("reflect");
      const sent = await run(
        BUF,
        [
          "curl",
          ...flags,
          "-H",
          `Authorization: Bearer ${token}`,
          "-d",
          JSON.stringify({ room, user: "someone", content: "via reflection" }),
          `${server.baseUrl}/chat.ChatService/SendMessage`,
        ],
        { timeout: 20_000 },
      );
      expect(JSON.parse(sent.stdout)).toMatchObject({ offset: "1" });
      const history = await run(
        BUF,
        [
          "curl",
          ...flags,
          "-H",
          `Authorization: Bearer ${token}`,
          "-d",
          JSON.stringify({ room }),
          `${server.baseUrl}/chat.ChatService/GetHistory`,
        ],
        { timeout: 20_000 },
      );
      expect(JSON.parse(history.stdout)).toMatchObject({
        messages: [{ user: "olivia", content: "via reflection" }],
      });
      // The older v1alpha protocol too (grpcurl and older tools ask for it).
      const alpha = await run(
        BUF,
        ["curl", ...flags, "--reflect-protocol", "grpc-v1alpha", "--list-services", server.baseUrl],
        { timeout: 20_000 },
      );
      expect(alpha.stdout).toContain("chat.ChatService");
    },
  );

  it("exposes /metrics as Prometheus text whose counters match the calls made", async () => {
    const room = uniqueRoom("metrics");
    const scrape = async () =>
      parsePrometheus(await (await fetch(`${server.baseUrl}/metrics`)).text());
    const before = await scrape();
    const connect = createClient(
      ChatService,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "connect", token }),
    );
    const grpc = createClient(
      ChatService,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc", token }),
    );
    const sub = new StreamReader((signal) =>
      grpc.subscribeMessages({ room, user: "watcher" }, { signal }),
    );
    await sub.waitFor((m) => m.type === 1); // JOIN
    for (let i = 0; i < 3; i++) await connect.sendMessage({ room, user: "u", content: `c${i}` });
    for (let i = 0; i < 2; i++) await grpc.sendMessage({ room, user: "u", content: `g${i}` });
    await connectErrorOf(connect.sendMessage({ room: "bad room", user: "u", content: "x" }));
    await sub.waitFor((m) => m.content === "g1");
    const after = await scrape();
    const delta = (name: string, match: Record<string, string>) =>
      total(after, name, match) - total(before, name, match);
    const send = { grpc_service: "chat.ChatService", grpc_method: "SendMessage" };
    expect(delta("grpc_server_started_total", { ...send, protocol: "connect" })).toBe(4);
    expect(delta("grpc_server_started_total", { ...send, protocol: "grpc" })).toBe(2);
    expect(delta("grpc_server_handled_total", { ...send, grpc_code: "OK" })).toBe(5);
    expect(delta("grpc_server_handled_total", { ...send, grpc_code: "InvalidArgument" })).toBe(1);
    expect(delta("grpc_server_handling_seconds_count", send)).toBe(6);
    expect(delta("grpc_server_msg_received_total", send)).toBe(6);
    expect(
      total(after, "grpc_server_started_total", {
        grpc_method: "SubscribeMessages",
        grpc_type: "server_stream",
        protocol: "grpc",
      }),
    ).toBeGreaterThanOrEqual(1);
    // welcome, JOIN, 5 messages so far on the subscription.
    expect(
      delta("grpc_server_msg_sent_total", { grpc_method: "SubscribeMessages", protocol: "grpc" }),
    ).toBeGreaterThanOrEqual(7);
    expect(delta("switchboard_deliveries_total", {})).toBeGreaterThanOrEqual(6);
    expect(total(after, "switchboard_subscribers")).toBeGreaterThanOrEqual(1);
    expect(
      total(after, "switchboard_open_streams", { rpc: "SubscribeMessages" }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      delta("switchboard_store_seconds_count", { operation: "append" }),
    ).toBeGreaterThanOrEqual(6);
    expect(total(after, "process_resident_memory_bytes")).toBeGreaterThan(0);
    sub.cancel();
    await sub.ended;
  });

  it("writes one log line per RPC, without the token, and StreamLogs tails them", async () => {
    // An identity of this test's own, so other tests' lines (stdout is written asynchronously)
    // cannot mix in.
    const user = `logger-${Math.random().toString(36).slice(2, 8)}`;
    // StreamLogs needs the admin role (the token's roles claim).
    const mine = await new SignJWT({ roles: ["admin"] })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(user)
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));
    const client = createClient(
      ChatService,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc", token: mine }),
    );
    const room = uniqueRoom("logs");
    await client.sendMessage({ room, user: "u", content: "logged" });
    await client.getHistory({ room });
    const refused = await connectErrorOf(client.getHistory({ room: "no room" }));

    const logs = createClient(
      LogService,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc", token: mine }),
    );
    const tail = new StreamReader<LogEntry>((signal) =>
      logs.streamLogs({ minLevel: LogLevel.INFO, backlog: 1000 }, { signal }),
    );
    const line = await tail.waitFor(
      (e) =>
        e.message === "rpc" &&
        e.fields?.user === user &&
        e.fields?.method === "/chat.ChatService/GetHistory",
    );
    expect(line.fields).toMatchObject({ protocol: "grpc", code: "OK" });
    tail.cancel();

    await server.waitForRecord(
      (r) => r.msg === "rpc" && r.user === user && r.code === "InvalidArgument",
    );
    const rpcLines = server
      .records()
      .filter(
        (r) => r.msg === "rpc" && r.user === user && r.method !== "/chat.LogService/StreamLogs",
      );
    expect(rpcLines.map((r) => `${r.method} ${r.code}`)).toEqual([
      "/chat.ChatService/SendMessage OK",
      "/chat.ChatService/GetHistory OK",
      "/chat.ChatService/GetHistory InvalidArgument",
    ]);
    // A failed call's line carries its reason, the message its caller saw; a call that
    // succeeded has none.
    expect(rpcLines.map((r) => r.error)).toEqual([undefined, undefined, refused.rawMessage]);
    expect(refused.rawMessage).not.toBe("");
    for (const r of rpcLines) {
      expect(r).toMatchObject({
        protocol: "grpc",
        peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      });
      expect(r.durationMs).toEqual(expect.any(Number));
    }
    expect(server.lines.join("\n")).not.toContain(mine);
    expect(server.lines.join("\n")).not.toContain(token);
  });
});
