// The pnpm patch of connect-node's `write()` (patches/@connectrpc__connect-node@2.2.0.patch):
// listeners and a promise only when the stream asks the caller to wait. What it must keep: every
// chunk arrives, in order, through backpressure (the writes that return false wait for `drain`).
import { once } from "node:events";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";

const CHUNK = 16 * 1024;
const CHUNKS = 64;

let server: http2.Http2Server | undefined;
let client: http2.ClientHttp2Session | undefined;

afterEach(async () => {
  client?.destroy();
  client = undefined;
  const s = server;
  server = undefined;
  if (s !== undefined) await new Promise((resolve) => s.close(resolve));
});

/** A server whose one answer is `CHUNKS` chunks written by connect-node; resolves its outcome. */
async function serve(): Promise<{ port: number; counts: { once: number; waits: number } }> {
  const h2 = http2.createServer({ settings: { initialWindowSize: 65_535 } });
  server = h2;
  const counts = { once: 0, waits: 0 };
  h2.once("request", (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    const once = res.once.bind(res);
    res.once = ((event: string, listener: (...args: unknown[]) => void) => {
      if (event === "drain" || event === "error") counts.once++;
      return once(event, listener);
    }) as typeof res.once;
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    res.write = ((...args: unknown[]) => {
      const flushed = write(...args);
      if (!flushed) counts.waits++;
      return flushed;
    }) as typeof res.write;
    async function* body() {
      for (let i = 0; i < CHUNKS; i++) yield new Uint8Array(CHUNK).fill(i);
    }
    // (Its promise settles on the response's `end` event, which Http2ServerResponse does not
    // emit: connect-fastify's adapter ends the reply itself. The client's view is what counts.)
    void universalResponseToNodeResponse(
      {
        status: 200,
        header: new Headers({ "content-type": "application/octet-stream" }),
        body: body(),
      },
      res,
    ).catch(() => {});
  });
  h2.listen(0, "127.0.0.1");
  await once(h2, "listening");
  return { port: (h2.address() as AddressInfo).port, counts };
}

describe("connect-node write() (patched)", () => {
  it("delivers every chunk in order through backpressure, with listeners only for the waits", async () => {
    const { port, counts } = await serve();
    client = http2.connect(`http://127.0.0.1:${port}`);
    const stream = client.request({ ":path": "/" });
    // A slow reader: the 64 KiB stream window fills, write() returns false, the writer waits.
    stream.pause();
    await sleep(200);
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.resume();
    await once(stream, "end");
    const body = Buffer.concat(chunks);
    expect(body.length).toBe(CHUNK * CHUNKS);
    for (let i = 0; i < CHUNKS; i++) expect(body[i * CHUNK]).toBe(i);
    // Some writes had to wait; each of those, and only those, added an "error" and a "drain"
    // listener (unpatched: two per chunk, 128).
    expect(counts.waits).toBeGreaterThan(0);
    expect(counts.waits).toBeLessThan(CHUNKS);
    expect(counts.once).toBe(2 * counts.waits);
  });
});
