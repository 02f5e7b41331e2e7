import { execFile } from "node:child_process";
import http2 from "node:http2";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { SendMessageRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import { connectH2, envelope, rawGrpc } from "./raw-grpc.js";
import { within } from "./support.js";
import { skipWithout, toolPath } from "./tools.js";

// Every early refusal, as a peer sees it: a Connect caller gets the HTTP status and the Connect
// error body {code, message} (never an empty body, never Fastify's own JSON), a gRPC or
// gRPC-Web caller a trailers-only response (HTTP 200, grpc-status and grpc-message in one
// HEADERS frame with END_STREAM). Over HTTP/1.1 (fetch, curl) and HTTP/2 (node:http2).

const run = promisify(execFile);
let server: ServerProcess;

beforeAll(async () => {
  server = await startServer({ store: "memory" });
});

afterAll(async () => {
  await server?.close();
});

/** What came back for one request. */
interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The response HEADERS frame carried END_STREAM (HTTP/2 only). */
  endStreamOnHeaders?: boolean;
}

async function h1(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const res = await fetch(`${server.baseUrl}${path}`, init);
  return {
    status: res.status,
    headers: Object.fromEntries(res.headers),
    body: await res.text(),
  };
}

async function h2(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const session = await connectH2(server.baseUrl);
  try {
    const stream = session.request({
      ":method": init.method ?? "GET",
      ":path": path,
      ...init.headers,
    });
    const answer = new Promise<Answer>((resolve, reject) => {
      let status = 0;
      let headers: Record<string, string> = {};
      let endStreamOnHeaders = false;
      const chunks: Buffer[] = [];
      stream.on("response", (h, flags) => {
        status = Number(h[":status"]);
        headers = Object.fromEntries(
          Object.entries(h)
            .filter(([k]) => !k.startsWith(":"))
            .map(([k, v]) => [k, String(v)]),
        );
        endStreamOnHeaders = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", reject);
      stream.on("close", () =>
        resolve({ status, headers, body: Buffer.concat(chunks).toString(), endStreamOnHeaders }),
      );
    });
    stream.end(init.body);
    return await within(answer, 5_000, `HTTP/2 ${path}`);
  } finally {
    session.close();
  }
}

const SEND = "/chat.ChatService/SendMessage";
const LIST = "/chat.ChatService/ListRooms";

/** A Connect error answer: the status, JSON content type, and the body's code and message. */
function expectConnectError(answer: Answer, status: number, code: string, message: RegExp) {
  expect(answer.status).toBe(status);
  expect(answer.headers["content-type"]).toBe("application/json");
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(["code", "message"]);
  expect(body.code).toBe(code);
  expect(body.message).toMatch(message);
}

describe("Connect callers get the HTTP status and the Connect error body", () => {
  const cases: Array<{
    name: string;
    path: string;
    init: { method?: string; headers?: Record<string, string>; body?: string };
    status: number;
    code: string;
    message: RegExp;
    header?: [string, string];
  }> = [
    {
      name: "unknown method: 404",
      path: "/chat.ChatService/NoSuchMethod",
      init: { method: "POST", headers: { "content-type": "application/json" }, body: "{}" },
      status: 404,
      code: "unimplemented",
      message: /^unknown method POST \/chat\.ChatService\/NoSuchMethod$/,
    },
    {
      name: "unknown service: 404",
      path: "/chat.NoSuchService/Send",
      init: { method: "POST", headers: { "content-type": "application/json" }, body: "{}" },
      status: 404,
      code: "unimplemented",
      message: /^unknown method POST \/chat\.NoSuchService\/Send$/,
    },
    {
      name: "PUT: 405 with Allow",
      path: SEND,
      init: { method: "PUT", headers: { "content-type": "application/json" }, body: "{}" },
      status: 405,
      code: "unimplemented",
      message: /^HTTP PUT is not allowed for \/chat\.ChatService\/SendMessage; use POST$/,
      header: ["allow", "POST"],
    },
    {
      name: "DELETE: 405 with Allow",
      path: SEND,
      init: { method: "DELETE" },
      status: 405,
      code: "unimplemented",
      message: /^HTTP DELETE is not allowed/,
      header: ["allow", "POST"],
    },
    {
      name: "GET of a method with side effects: 405",
      path: SEND,
      init: {},
      status: 405,
      code: "unimplemented",
      message: /^HTTP GET is not allowed for \/chat\.ChatService\/SendMessage; use POST$/,
      header: ["allow", "POST"],
    },
    {
      name: "DELETE of a GET-able method: 405, Allow: POST, GET",
      path: LIST,
      init: { method: "DELETE" },
      status: 405,
      code: "unimplemented",
      message: /^HTTP DELETE is not allowed for \/chat\.ChatService\/ListRooms; use POST or GET$/,
      header: ["allow", "POST, GET"],
    },
    {
      name: "text/plain: 415",
      path: SEND,
      init: { method: "POST", headers: { "content-type": "text/plain" }, body: "hello" },
      status: 415,
      code: "unimplemented",
      message:
        /^content type "text\/plain" is not supported for \/chat\.ChatService\/SendMessage; use application\/json or application\/proto/,
      header: [
        "accept-post",
        "application/json, application/proto, application/grpc, application/grpc-web",
      ],
    },
    {
      name: "no content type: 415",
      path: SEND,
      init: { method: "POST", body: "{}" },
      status: 415,
      code: "unimplemented",
      message: /^content type "text\/plain;charset=UTF-8" is not supported/,
    },
    {
      name: "a streaming content type for a unary method: 415",
      path: SEND,
      init: { method: "POST", headers: { "content-type": "application/connect+json" }, body: "" },
      status: 415,
      code: "unimplemented",
      message: /^content type "application\/connect\+json" is not supported/,
    },
    {
      name: "a unary content type for a server stream: 415",
      path: "/chat.ChatService/SubscribeMessages",
      init: { method: "POST", headers: { "content-type": "application/json" }, body: "{}" },
      status: 415,
      code: "unimplemented",
      message:
        /use application\/connect\+json or application\/connect\+proto \(Connect streaming\)/,
    },
    {
      name: "GET without parameters: 415",
      path: LIST,
      init: {},
      status: 415,
      code: "unimplemented",
      message:
        /^a Connect GET of \/chat\.ChatService\/ListRooms needs encoding=json or encoding=proto \(got none\)/,
    },
    {
      name: "GET with encoding=xml: 415",
      path: `${LIST}?encoding=xml&message=%7B%7D`,
      init: {},
      status: 415,
      code: "unimplemented",
      message: /\(got "xml"\)/,
    },
    {
      name: "a URL Fastify cannot decode: 400",
      path: "/chat.ChatService/%zz",
      init: {},
      status: 400,
      code: "invalid_argument",
      message: /is not a valid url component/,
    },
  ];

  for (const version of ["HTTP/1.1", "HTTP/2"] as const) {
    test.each(cases)(`${version}: $name`, async ({ path, init, status, code, message, header }) => {
      // fetch sends text/plain for a string body without a content type; node:http2 sends none.
      const request =
        version === "HTTP/2" && init.body !== undefined && init.headers === undefined
          ? { ...init, headers: { "content-type": "text/plain;charset=UTF-8" } }
          : init;
      const answer = await (version === "HTTP/1.1" ? h1(path, request) : h2(path, request));
      expectConnectError(answer, status, code, message);
      if (header !== undefined) expect(answer.headers[header[0]]).toBe(header[1]);
    });
  }

  test.skipIf(skipWithout("curl"))(
    "a form post (curl -d): 415 with the Connect body, not Fastify's",
    async () => {
      const { stdout } = await run(toolPath("curl"), [
        "-sS",
        "-w",
        "\\n%{http_code} %{content_type}",
        "-d",
        "room=general&user=alice&content=hi",
        `${server.baseUrl}${SEND}`,
      ]);
      const [body, statusLine] = stdout.split("\n");
      expect(statusLine).toBe("415 application/json");
      expect(JSON.parse(body as string)).toEqual({
        code: "unimplemented",
        message: expect.stringMatching(
          /^content type "application\/x-www-form-urlencoded" is not supported for \/chat\.ChatService\/SendMessage/,
        ),
      });
      expect(body).not.toMatch(/FST_|statusCode/);
    },
  );

  test("Chat over HTTP/1.1: 505 with the Connect body and Connection: close", async () => {
    const answer = await h1("/chat.ChatService/Chat", {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: "",
    });
    expectConnectError(
      answer,
      505,
      "unimplemented",
      /^\/chat\.ChatService\/Chat is a bidi stream: it needs HTTP\/2$/,
    );
    expect(answer.headers.connection).toBe("close");
  });
});

describe("gRPC and gRPC-Web callers get a trailers-only answer", () => {
  const grpcCases = [
    {
      name: "unknown method",
      path: "/chat.ChatService/NoSuchMethod",
      method: "POST",
      message: "unknown method POST /chat.ChatService/NoSuchMethod",
    },
    {
      name: "unknown service",
      path: "/chat.NoSuchService/Send",
      method: "POST",
      message: "unknown method POST /chat.NoSuchService/Send",
    },
    {
      name: "PUT",
      path: SEND,
      method: "PUT",
      message: "HTTP PUT is not allowed for /chat.ChatService/SendMessage; use POST",
    },
  ];
  test.each(grpcCases)("gRPC over HTTP/2: $name", async ({ path, method, message }) => {
    const answer = await h2(path, {
      method,
      headers: { "content-type": "application/grpc", te: "trailers" },
      body: "",
    });
    expect(answer).toMatchObject({ status: 200, body: "", endStreamOnHeaders: true });
    expect(answer.headers["grpc-status"]).toBe("12");
    expect(answer.headers["content-type"]).toBe("application/grpc");
    // Percent-encoded the gRPC spec's way: printable ASCII as it is.
    expect(answer.headers["grpc-message"]).toBe(message);
  });

  test.each(grpcCases)("gRPC-Web over HTTP/1.1: $name", async ({ path, method, message }) => {
    const answer = await h1(path, {
      method,
      headers: { "content-type": "application/grpc-web+proto" },
      body: "",
    });
    expect(answer).toMatchObject({ status: 200, body: "" });
    expect(answer.headers["grpc-status"]).toBe("12");
    expect(answer.headers["grpc-message"]).toBe(message);
  });

  test("gRPC-Web Chat over HTTP/1.1: Unimplemented, it needs HTTP/2", async () => {
    const answer = await h1("/chat.ChatService/Chat", {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: "",
    });
    expect(answer.status).toBe(200);
    expect(answer.headers["grpc-status"]).toBe("12");
    expect(answer.headers["grpc-message"]).toBe(
      "/chat.ChatService/Chat is a bidi stream: it needs HTTP/2",
    );
  });

  test("connect-es's own grpc-message trailers are percent-encoded the spec's way", async () => {
    // InvalidArgument from the validation interceptor, written by connect-es; encodeURIComponent
    // would send "room%3A%20does%20not%20match%20regex%20pattern%20%60%5E%5BA-Za-z0-9._-%5D…",
    // which gRPC C-core shows undecoded.
    const request = toBinary(
      SendMessageRequestSchema,
      create(SendMessageRequestSchema, { room: "a b", user: "u", content: "x" }),
    );
    const result = await rawGrpc(server.baseUrl, SEND, [envelope(request)]);
    expect(result.status).toBe(3);
    expect(result.trailers["grpc-message"]).toBe(
      "room: does not match regex pattern `^[A-Za-z0-9._-]{1,64}$` [string.pattern]",
    );
  });
});
