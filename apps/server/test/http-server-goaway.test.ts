// HTTP/2 clients that keep their half of the TCP connection open after the session is over (as
// h2load does until its whole run ends): node:http2 ends the socket and waits for the peer's FIN,
// and it unbinds the destroyed session from the socket meanwhile. Neither may take the server
// down, and neither may hold its shutdown.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestCertificate, type TestCertificate } from "./certificate.js";
import { ServerProcess } from "./harness.js";
import { skipWithout } from "./tools.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
/** GOAWAY: last stream 0, NO_ERROR. */
const GOAWAY = Buffer.from([0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

/** An HTTP/2 connection (h2c, or h2 over TLS when `ca` is given) that never ends its half by itself. */
async function openHttp2(port: number, ca: Buffer | undefined): Promise<net.Socket> {
  const socket =
    ca === undefined
      ? net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
      : // allowHalfOpen is a net.Socket option that tls.connect passes on (not in its types).
        tls.connect({
          port,
          host: "127.0.0.1",
          ca,
          ALPNProtocols: ["h2"],
          allowHalfOpen: true,
        } as tls.ConnectionOptions);
  await new Promise<void>((resolve, reject) => {
    socket.once(ca === undefined ? "connect" : "secureConnect", resolve);
    socket.once("error", reject);
  });
  // A reset from the server once it gave up on us is not what these tests look at.
  socket.on("error", () => {});
  socket.on("data", () => {});
  socket.write(Buffer.concat([PREFACE, EMPTY_SETTINGS]));
  return socket;
}

/** GET /healthz over HTTP/1.1 (TLS when `ca` is given): the status code. */
function healthz(port: number, ca: Buffer | undefined): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const socket =
      ca === undefined
        ? net.connect(port, "127.0.0.1")
        : tls.connect({ port, host: "127.0.0.1", ca, ALPNProtocols: ["http/1.1"] });
    socket.on(ca === undefined ? "connect" : "secureConnect", () =>
      socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    );
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      text += d;
    });
    socket.on("close", () => resolve(Number(text.split(" ")[1])));
    socket.on("error", reject);
  });
}

const noOpenssl = skipWithout("openssl");
describe.each(
  [
    ["h2c", false],
    ["h2 over TLS", true],
  ].filter(([, useTls]) => !(useTls && noOpenssl)),
)("HTTP/2 clients that keep their half open (%s)", (_name, useTls) => {
  let server: ServerProcess;
  let dir: string;
  let ca: Buffer | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchboard-linger-"));
    const cert: TestCertificate | undefined = useTls ? createTestCertificate(dir) : undefined;
    ca = cert?.ca;
    server = await ServerProcess.start({
      store: "memory",
      env: cert === undefined ? {} : { TLS_CERT: cert.certFile, TLS_KEY: cert.keyFile },
    });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a client that sends GOAWAY and then lingers does not take the server down", async () => {
    const socket = await openHttp2(server.port, ca);
    await new Promise((r) => setTimeout(r, 100));
    socket.write(GOAWAY);
    // The server ends its half; the client keeps its own open well past a second.
    await new Promise((r) => setTimeout(r, 1_500));
    socket.destroy();
    expect(server.pid, server.tail()).toBeDefined();
    expect(await healthz(server.port, ca)).toBe(200);
  });

  it("a connection that never sends a byte does not hold the shutdown", async () => {
    const socket = net.connect({ port: server.port, host: "127.0.0.1" });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.on("error", () => {});
    const started = Date.now();
    const exit = await server.kill("SIGTERM", 15_000);
    socket.destroy();
    expect(exit, server.tail()).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5_000);
    await server.restart();
  });

  it("a client that never closes does not hold the shutdown", async () => {
    const socket = await openHttp2(server.port, ca);
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    const exit = await server.kill("SIGTERM", 15_000);
    socket.destroy();
    expect(exit, server.tail()).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
