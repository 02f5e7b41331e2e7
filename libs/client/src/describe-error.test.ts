import { createServer, type Server, type Socket } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, describe, expect, it } from "vitest";
import { describeError } from "./describe-error.js";
import { createNodeTransport } from "./node.js";
import type { Protocol } from "./transport-options.js";

// Real connect-node errors from real sockets: what each failure looks like to a user.
const servers: Server[] = [];
async function listen(onConnection: (socket: Socket) => void): Promise<string> {
  const server = createServer(onConnection);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return `http://127.0.0.1:${address.port}`;
}
afterAll(() => {
  for (const server of servers) server.close();
});

async function failure(baseUrl: string, protocol: Protocol = "connect"): Promise<ConnectError> {
  const client = createClient(ChatService, createNodeTransport({ baseUrl, protocol }));
  try {
    await client.listRooms({}, { timeoutMs: 5_000 });
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

describe("describeError", () => {
  it("names a refused connection", async () => {
    const err = await failure("http://127.0.0.1:1");
    expect(describeError(err)).toEqual({
      code: Code.Unavailable,
      message: "server unavailable (connection refused)",
      network: true,
    });
  });

  it.each(["connect", "grpc", "grpcweb"] as const)(
    "says a port that runs another service is not Switchboard (%s)",
    async (protocol) => {
      const ssh = await listen((socket) => socket.end("SSH-2.0-OpenSSH_9.2\r\n"));
      const closer = await listen((socket) => socket.destroy());
      for (const url of [ssh, closer]) {
        const described = describeError(await failure(url, protocol), url);
        expect(described.code).toBe(Code.Unavailable);
        expect(described.message).toMatch(
          protocol === "grpc" && url === closer
            ? /^connection lost/
            : new RegExp(
                `^${url} (does not answer in HTTP|closed the connection without answering)`,
              ),
        );
      }
    },
  );

  it("tells an https:// URL against a plain port to use http://", async () => {
    // A plain server that hangs up on what it cannot parse, as Node's HTTP server does.
    const plain = await listen((socket) => socket.once("data", () => socket.destroy()));
    const https = plain.replace("http:", "https:");
    const described = describeError(await failure(https), https);
    expect(described.message).toBe(
      `TLS handshake failed: ${https} closed the connection; is it serving plain http://? Try ${plain}`,
    );
  });

  it("keeps what the server said", () => {
    const err = new ConnectError("room must match [A-Za-z0-9._-]{1,64}", Code.InvalidArgument);
    expect(describeError(err)).toEqual({
      code: Code.InvalidArgument,
      message: "room must match [A-Za-z0-9._-]{1,64}",
      network: false,
    });
    expect(describeError(new ConnectError("Failed to fetch", Code.Unknown)).message).toBe(
      "server unreachable (Failed to fetch)",
    );
  });
});
