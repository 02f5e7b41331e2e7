import { createContextValues } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { LeanLane } from "./lean-lane.js";
import type { LeanHead } from "./lean-stream.js";

const PATH = "/chat.ChatService/SendMessage";

/** A lane with one handler on PATH that records the head it is given. */
function lane() {
  const heads: LeanHead[] = [];
  const lean = new LeanLane({
    contextValues: () => createContextValues(),
    responseHeaders: (headers) => (headers.origin === undefined ? undefined : { vary: "Origin" }),
  });
  lean.serve([{ requestPath: PATH, serveStream: (_stream, _headers, head) => heads.push(head) }]);
  return { lean, heads };
}

const grpcHeaders = (extra: Record<string, string> = {}) => ({
  ":method": "POST",
  ":path": PATH,
  "content-type": "application/grpc",
  ...extra,
});

describe("the lean lane's rule: which HTTP/2 streams it takes", () => {
  it("takes gRPC (proto or JSON, uncompressed) POSTs to its paths", () => {
    const { lean, heads } = lane();
    for (const [contentType, binary] of [
      ["application/grpc", true],
      ["application/grpc+proto", true],
      ["application/grpc+json", false],
    ] as const) {
      const headers = grpcHeaders({ "content-type": contentType });
      const server = lean.route(headers);
      expect(server, contentType).toBeDefined();
      server?.serveStream({} as never, headers);
      expect(heads.at(-1)?.wire.binary, contentType).toBe(binary);
    }
    expect(lean.route(grpcHeaders({ "grpc-encoding": "identity" }))).toBeDefined();
  });

  it("leaves everything else to the compat layer and Fastify", () => {
    const { lean } = lane();
    const left = {
      "another path": grpcHeaders({ ":path": "/chat.ChatService/GetHistory" }),
      "a query string": grpcHeaders({ ":path": `${PATH}?x=1` }),
      GET: grpcHeaders({ ":method": "GET" }),
      "gRPC-Web": grpcHeaders({ "content-type": "application/grpc-web+proto" }),
      "gRPC-Web text": grpcHeaders({ "content-type": "application/grpc-web-text" }),
      "Connect unary": grpcHeaders({ "content-type": "application/proto" }),
      "Connect streaming": grpcHeaders({ "content-type": "application/connect+proto" }),
      "an unknown gRPC codec": grpcHeaders({ "content-type": "application/grpc+thrift" }),
      "no content type": { ":method": "POST", ":path": PATH },
      "a compressed body": grpcHeaders({ "grpc-encoding": "gzip" }),
      "an Expect header": grpcHeaders({ expect: "100-continue" }),
    };
    for (const [name, headers] of Object.entries(left)) {
      expect(lean.route(headers), name).toBeUndefined();
    }
  });

  it("gives the handler the call's wire, context values and extra headers", () => {
    const { lean, heads } = lane();
    const stream = {} as never;
    lean.route(grpcHeaders({ "content-type": "application/grpc+json" }))?.serveStream(stream, {
      ...grpcHeaders({ "content-type": "application/grpc+json" }),
      origin: "https://a.example",
    });
    lean.route(grpcHeaders())?.serveStream(stream, grpcHeaders());
    expect(heads.map((h) => [h.wire.protocol, h.wire.binary, h.extra])).toEqual([
      ["grpc", false, { vary: "Origin" }],
      ["grpc", true, undefined],
    ]);
  });
});
