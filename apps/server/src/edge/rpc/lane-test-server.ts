// For the handlers' unit tests: an h2c server that serves every call through one lane's entry
// point into a handler, so a test runs the same assertions on both lanes.
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { createContextValues } from "@connectrpc/connect";
import type { StreamServedHandler } from "./lean-stream.js";
import { detectProtocol, type Wire } from "./protocol.js";
import type { NodeServedHandler } from "./unary-handler.js";

/** How a test server serves its calls: one lane's entry point into the handler. */
export type Lane = "serveNode" | "serveStream";

/**
 * Listens on a free loopback port and serves every request with `handler.serveNode` (node:http2's
 * compat request and response, as unary-routes.ts's Fastify routes do; a request it declines is
 * answered with HTTP `declinedStatus`) or every stream with `handler.serveStream` (the raw stream,
 * as the lean lane does: edge/rpc/lean-lane.ts). Resolves with the server and its `http://` URL.
 */
export async function listenOnLane(
  handler: NodeServedHandler & StreamServedHandler,
  lane: Lane,
  declinedStatus: number,
): Promise<{ server: http2.Http2Server; url: string }> {
  const server =
    lane === "serveNode"
      ? http2.createServer((req, res) => {
          if (!handler.serveNode(req, res, createContextValues())) {
            res.writeHead(declinedStatus).end();
          }
        })
      : http2.createServer().on("stream", (stream, headers) => {
          const wire = detectProtocol(headers["content-type"], "POST").wire as Wire;
          handler.serveStream(stream, headers, {
            wire,
            values: createContextValues(),
            extra: undefined,
          });
        });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
