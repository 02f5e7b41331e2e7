// The request rules as outside clients see them: written in proto/chat/*.proto as protovalidate
// rules, enforced by the standard interceptor on every protocol, refused with InvalidArgument and
// a buf.validate.Violations error detail that any Connect or gRPC client decodes (connect-es on
// every transport, @grpc/grpc-js from grpc-status-details-bin, curl's Connect JSON), and served by
// gRPC reflection with the rules on the fields (buf curl, and a reflection client reading the
// descriptors).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { create, createFileRegistry, fromBinary, getOption } from "@bufbuild/protobuf";
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import {
  field as fieldRules,
  type Violations,
  ViolationsSchema,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { createClient } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { createNodeTransport } from "@switchboard/client/node";
import { MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { ServerReflection } from "@switchboard/proto/gen/grpc/reflection/v1/reflection_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServer } from "./harness.js";
import {
  Code,
  chatClient,
  connectErrorOf,
  decodeStatus,
  grpcJsChatClient,
  Pushable,
  TRANSPORT_CASES,
  uniqueRoom,
  within,
} from "./support.js";
import { skipWithout, toolPath } from "./tools.js";

const run = promisify(execFile);
const ROOM_PATTERN = "^[A-Za-z0-9._-]{1,64}$";
const ROOM_VIOLATION = `room: does not match regex pattern \`${ROOM_PATTERN}\` [string.pattern]`;

let server: ServerProcess;

beforeAll(async () => {
  server = await startServer({ store: "memory" });
});

afterAll(async () => {
  await server?.close();
});

/** Each violation as "field rule_id: message". */
function summary(violations: Violations[]): string[] {
  return violations
    .flatMap((v) => v.violations)
    .map((v) => `${v.field?.elements.map((e) => e.fieldName).join(".")} ${v.ruleId}: ${v.message}`);
}

describe("a request that breaks a schema rule", () => {
  it.each(TRANSPORT_CASES)(
    "$name: InvalidArgument with the Violations detail, unary and server-streaming",
    async (tc) => {
      const chat = chatClient(server.baseUrl, tc);
      const err = await connectErrorOf(
        chat.sendMessage({ room: "no spaces!", user: "alice", content: "" }),
      );
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toBe("content: value is required [required], and 1 more violation");
      expect(summary(err.findDetails(ViolationsSchema))).toEqual([
        "content required: value is required",
        `room string.pattern: does not match regex pattern \`${ROOM_PATTERN}\``,
      ]);

      const history = await connectErrorOf(chat.getHistory({ room: "ok", limit: 501 }));
      expect(summary(history.findDetails(ViolationsSchema))).toEqual([
        "limit uint32.lte: must be less than or equal to 500",
      ]);
      const subscribe = await connectErrorOf(
        (async () => {
          for await (const _ of chat.subscribeMessages({ room: "a/b", user: "alice" })) break;
        })(),
      );
      expect([subscribe.code, subscribe.rawMessage]).toEqual([
        Code.InvalidArgument,
        ROOM_VIOLATION,
      ]);
      expect(subscribe.findDetails(ViolationsSchema)).toHaveLength(1);
    },
  );

  it.each(TRANSPORT_CASES)(
    "$name: a client stream's bad message, by its index, with the detail; the earlier one is stored",
    async (tc) => {
      const chat = chatClient(server.baseUrl, tc);
      const room = uniqueRoom("upload-rule");
      const err = await connectErrorOf(
        chat.uploadMessages(
          (async function* () {
            yield create(MessageSchema, { room, user: "u", content: "first" });
            yield create(MessageSchema, { room: "bad room", user: "u", content: "second" });
          })(),
        ),
      );
      expect([err.code, err.rawMessage]).toEqual([
        Code.InvalidArgument,
        `message 1: ${ROOM_VIOLATION}`,
      ]);
      expect(summary(err.findDetails(ViolationsSchema))).toEqual([
        `room string.pattern: does not match regex pattern \`${ROOM_PATTERN}\``,
      ]);
      const page = await chat.getHistory({ room });
      expect(page.messages.map((m) => m.content)).toEqual(["first"]);
    },
  );

  it.each(TRANSPORT_CASES.filter((tc) => tc.bidi))(
    "$name: a bidi stream (Chat) ends at its bad message with the detail, after echoing the good one",
    async (tc) => {
      const chat = chatClient(server.baseUrl, tc);
      const room = uniqueRoom("chat-rule");
      const requests = new Pushable<ReturnType<typeof create<typeof MessageSchema>>>();
      const received: string[] = [];
      const ended = (async () => {
        try {
          for await (const m of chat.chat(requests)) {
            received.push(m.content);
            if (received.length === 1) requests.push(create(MessageSchema, { room, content: "" }));
          }
        } catch (err) {
          return connectErrorOf(Promise.reject(err));
        }
        throw new Error("the stream ended without an error");
      })();
      requests.push(create(MessageSchema, { room, user: "u", content: "hello" }));
      const err = await within(ended, 10_000, "Chat's refusal of its second message");
      expect(received).toHaveLength(1);
      expect([err.code, err.rawMessage]).toEqual([
        Code.InvalidArgument,
        "message 1: user: value is required [required], and 1 more violation",
      ]);
      expect(summary(err.findDetails(ViolationsSchema)).map((v) => v.split(":")[0])).toEqual([
        "user required",
        "content required",
      ]);
    },
  );
});

describe("the Violations detail, read by clients that share no code with the server", () => {
  it("@grpc/grpc-js: code 3 and a google.rpc.Status in grpc-status-details-bin", async () => {
    const client = grpcJsChatClient(server.port);
    try {
      const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
        (
          client as unknown as {
            SendMessage(req: object, cb: (err: grpc.ServiceError | null) => void): void;
          }
        ).SendMessage({ room: "no spaces!", user: "g", content: "x" }, (e) =>
          e === null ? reject(new Error("the call succeeded")) : resolve(e),
        );
      });
      expect(err.code).toBe(3);
      expect(err.details).toBe(ROOM_VIOLATION);
      const [bin] = err.metadata.get("grpc-status-details-bin") as Buffer[];
      const status = decodeStatus(new Uint8Array(bin as Buffer));
      expect([status.code, status.message]).toEqual([3, ROOM_VIOLATION]);
      expect(status.details.map((d) => d.typeUrl)).toEqual([
        "type.googleapis.com/buf.validate.Violations",
      ]);
      const violations = fromBinary(ViolationsSchema, status.details[0]?.value as Uint8Array);
      expect(summary([violations])).toEqual([
        `room string.pattern: does not match regex pattern \`${ROOM_PATTERN}\``,
      ]);
      // The field path names the field by number and type too, for clients without the schema.
      expect(violations.violations[0]?.field?.elements[0]).toMatchObject({
        fieldNumber: 3,
        fieldName: "room",
      });
    } finally {
      client.close();
    }
  });

  it.skipIf(skipWithout("curl"))(
    "curl: the Connect JSON error lists the detail by type, its value base64 protobuf",
    async () => {
      const { stdout } = await run(toolPath("curl"), [
        ...["-sS", "-X", "POST", `${server.baseUrl}/chat.ChatService/SendMessage`],
        ...["-H", "Content-Type: application/json"],
        ...["-d", JSON.stringify({ room: "", user: "alice", content: "hi" })],
        ...["-w", "\n%{http_code}"],
      ]);
      const [body, httpStatus] = stdout.split("\n");
      expect(httpStatus).toBe("400");
      const error = JSON.parse(body as string) as {
        code: string;
        message: string;
        details: Array<{ type: string; value: string }>;
      };
      expect([error.code, error.message]).toEqual([
        "invalid_argument",
        "room: value is required [required]",
      ]);
      expect(error.details.map((d) => d.type)).toEqual(["buf.validate.Violations"]);
      const violations = fromBinary(
        ViolationsSchema,
        Buffer.from(error.details[0]?.value as string, "base64"),
      );
      expect(summary([violations])).toEqual(["room required: value is required"]);
    },
  );
});

describe("reflection serves the rules", () => {
  it("with chat.proto, its import buf/validate/validate.proto, and the rule on the field", async () => {
    const reflection = createClient(
      ServerReflection,
      createNodeTransport({ baseUrl: server.baseUrl, protocol: "grpc", httpVersion: "2" }),
    );
    async function* ask() {
      yield {
        messageRequest: { case: "fileContainingSymbol" as const, value: "chat.ChatService" },
      };
    }
    const files: FileDescriptorProto[] = [];
    for await (const res of reflection.serverReflectionInfo(ask())) {
      if (res.messageResponse.case !== "fileDescriptorResponse") throw new Error("no descriptors");
      files.push(
        ...res.messageResponse.value.fileDescriptorProto.map((b) =>
          fromBinary(FileDescriptorProtoSchema, b),
        ),
      );
    }
    const names = files.map((f) => f.name);
    expect(names).toContain("chat/chat.proto");
    expect(names).toContain("buf/validate/validate.proto");
    expect(files.find((f) => f.name === "chat/chat.proto")?.dependency).toContain(
      "buf/validate/validate.proto",
    );
    // What a client in another language does: build the schema from reflection alone and read
    // the rule on SendMessageRequest.room.
    const registry = createFileRegistry(
      create(FileDescriptorSetSchema, { file: importsFirst(files) }),
    );
    const room = registry
      .getMessage("chat.SendMessageRequest")
      ?.fields.find((f) => f.name === "room");
    expect(room).toBeDefined();
    const rules = getOption(room as NonNullable<typeof room>, fieldRules);
    expect(rules.required).toBe(true);
    expect(rules.type.case === "string" && rules.type.value.pattern).toBe(ROOM_PATTERN);
  });

  it.skipIf(skipWithout("buf"))(
    "buf curl through reflection alone: the refusal names the rule and decodes the detail",
    async () => {
      const err = await run(
        toolPath("buf"),
        [
          "curl",
          ...["--protocol", "grpc", "--http2-prior-knowledge"],
          ...["-d", JSON.stringify({ room: "no spaces!", user: "buf", content: "x" })],
          `${server.baseUrl}/chat.ChatService/SendMessage`,
        ],
        { timeout: 20_000 },
      ).then(
        () => undefined,
        (e: { stderr: string }) => e,
      );
      expect(err).toBeDefined();
      const printed = JSON.parse(err?.stderr as string) as {
        code: string;
        message: string;
        details: Array<{ type: string; debug?: unknown }>;
      };
      expect(printed.code).toBe("invalid_argument");
      expect(printed.message).toBe(ROOM_VIOLATION);
      expect(printed.details[0]?.type).toBe("buf.validate.Violations");
      // buf curl decoded the detail with the schema it got by reflection.
      expect(printed.details[0]?.debug).toMatchObject({
        violations: [{ ruleId: "string.pattern" }],
      });
    },
  );
});

/** `files` with every file after the files it imports (a FileDescriptorSet's order). */
function importsFirst(files: FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(files.map((f) => [f.name, f]));
  const out: FileDescriptorProto[] = [];
  const visit = (f: FileDescriptorProto | undefined) => {
    if (f === undefined || out.includes(f)) return;
    for (const dep of f.dependency) visit(byName.get(dep));
    out.push(f);
  };
  for (const f of files) visit(f);
  return out;
}
