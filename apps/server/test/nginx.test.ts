// deploy/nginx/switchboard.conf, run by Debian's nginx in front of two nodes on one Redis: every
// protocol through the proxy, and a subscription on one node fed by a message sent to the other.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createNodeTransport } from "@switchboard/client/node";
import { ChatService, type Message } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createTestCertificate } from "./certificate.js";
import { freePort, REPO_DIR, type ServerProcess, startServer } from "./harness.js";
import { RedisServer } from "./redis-server.js";
import { StreamReader, TRANSPORT_CASES, uniqueRoom } from "./support.js";
import { skipWithout, toolPath } from "./tools.js";

describe.skipIf(skipWithout("nginx", "redis-server", "openssl"))(
  "two nodes behind nginx (deploy/nginx/switchboard.conf)",
  () => {
    let redis: RedisServer;
    let nodes: ServerProcess[];
    let nginx: ChildProcess;
    let dir: string;
    let port: number;
    let ca: Buffer;

    beforeAll(async () => {
      redis = await RedisServer.start();
      nodes = await Promise.all([0, 1].map(() => startServer({ env: { STORE: redis.url } })));
      dir = mkdtempSync(join(tmpdir(), "switchboard-nginx-"));
      const certificate = createTestCertificate(dir);
      ca = certificate.ca;
      port = await freePort();
      // The shipped configuration, with this test's ports and certificate swapped in.
      const [a, b] = nodes as [ServerProcess, ServerProcess];
      const site = readFileSync(join(REPO_DIR, "deploy/nginx/switchboard.conf"), "utf8")
        .replaceAll("127.0.0.1:8081", `127.0.0.1:${a.port}`)
        .replaceAll("127.0.0.1:8082", `127.0.0.1:${b.port}`)
        .replace("listen 8443 ", `listen 127.0.0.1:${port} `)
        .replace("/etc/ssl/switchboard/cert.pem", certificate.certFile)
        .replace("/etc/ssl/switchboard/key.pem", certificate.keyFile);
      expect(site).toContain(`127.0.0.1:${b.port}`);
      mkdirSync(join(dir, "temp"));
      writeFileSync(
        join(dir, "nginx.conf"),
        `daemon off;
worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${join(dir, "temp")};
  proxy_temp_path ${join(dir, "temp")};
  fastcgi_temp_path ${join(dir, "temp")};
  uwsgi_temp_path ${join(dir, "temp")};
  scgi_temp_path ${join(dir, "temp")};
  ${site}
}
`,
      );
      nginx = spawn(toolPath("nginx"), ["-c", join(dir, "nginx.conf"), "-p", dir], {
        stdio: "ignore",
      });
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          const client = createClient(
            ChatService,
            createNodeTransport({ baseUrl: `https://127.0.0.1:${port}`, ca }),
          );
          await client.listRooms({});
          break;
        } catch (err) {
          if (Date.now() > deadline) {
            throw new Error(
              `nginx did not come up: ${String(err)}\n${safeRead(join(dir, "error.log"))}`,
            );
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });

    afterAll(async () => {
      nginx?.kill("SIGTERM");
      await Promise.all((nodes ?? []).map((n) => n.close()));
      await redis?.close();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    test.each(TRANSPORT_CASES)(
      "$name through nginx: subscribe, and receive a message sent through nginx",
      async (tc) => {
        const client = createClient(
          ChatService,
          createNodeTransport({ baseUrl: `https://127.0.0.1:${port}`, ca, ...tc }),
        );
        const room = uniqueRoom("nginx");
        const reader = new StreamReader<Message>((signal) =>
          client.subscribeMessages({ room, user: "watcher" }, { signal }),
        );
        await reader.waitFor((m) => m.id === "system");
        const sent = await client.sendMessage({
          room,
          user: "alice",
          content: `through nginx: ${tc.name}`,
        });
        const got = await reader.waitFor((m) => m.content === `through nginx: ${tc.name}`);
        expect(got.offset).toBe(sent.offset);
        reader.cancel();
      },
    );

    test("the nodes behind nginx share one room: a message sent to one node reaches a subscriber on the other", async () => {
      const [a, b] = nodes as [ServerProcess, ServerProcess];
      const room = uniqueRoom("shared");
      const onB = createClient(
        ChatService,
        createNodeTransport({ baseUrl: b.baseUrl, protocol: "grpc" }),
      );
      const onA = createClient(ChatService, createNodeTransport({ baseUrl: a.baseUrl }));
      const reader = new StreamReader<Message>((signal) =>
        onB.subscribeMessages({ room, user: "on-b" }, { signal }),
      );
      await reader.waitFor((m) => m.id === "system");
      await onA.sendMessage({ room, user: "on-a", content: "across nodes" });
      await reader.waitFor((m) => m.content === "across nodes");
      reader.cancel();
    });
  },
);

function safeRead(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
