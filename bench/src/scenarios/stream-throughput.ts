// Scenario 5, one stream's throughput: UploadMessages messages/s (one client stream writing as
// fast as flow control lets it, until the server's one answer).
import { once } from "node:events";
import type http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { connectH2, envelope, grpcHeaders, grpcStatus } from "../lib/grpc-wire.js";
import { loadNow } from "../lib/machine.js";
import type { StreamThroughputRun } from "../lib/results.js";
import { type ServerKind, type StartOptions, startServer } from "../lib/servers.js";

export interface StreamThroughputOptions {
  servers: ServerKind[];
  repetitions: number;
  messages: number;
  start: StartOptions;
  log: (line: string) => void;
}

async function upload(url: string, messages: number): Promise<{ seconds: number; status: string }> {
  const session = connectH2(url);
  const stream = session.request(grpcHeaders("UploadMessages"));
  let headers: http2.IncomingHttpHeaders | undefined;
  let status = "missing";
  stream.on("response", (h) => {
    headers = h;
  });
  stream.on("trailers", (t) => {
    status = grpcStatus(headers, t);
  });
  stream.on("data", () => {});
  const done = new Promise<void>((resolve) => {
    stream.on("close", () => resolve());
  });
  const start = performance.now();
  for (let i = 0; i < messages; i++) {
    const frame = envelope(
      toBinary(
        MessageSchema,
        create(MessageSchema, { room: "upload", user: "bench", content: `upload ${i}` }),
      ),
    );
    if (!stream.write(frame)) await once(stream, "drain");
  }
  stream.end();
  await done;
  const seconds = (performance.now() - start) / 1000;
  if (status === "missing" && headers?.["grpc-status"] !== undefined)
    status = String(headers["grpc-status"]);
  session.close();
  return { seconds, status };
}

export async function streamThroughputScenario(
  options: StreamThroughputOptions,
): Promise<StreamThroughputRun[]> {
  const runs: StreamThroughputRun[] = [];
  for (let repetition = 1; repetition <= options.repetitions; repetition++) {
    for (const server of options.servers) {
      const running = await startServer(server, options.start);
      try {
        await upload(running.url, Math.min(2000, options.messages)); // warm-up
        const load = loadNow();
        const { seconds, status } = await upload(running.url, options.messages);
        const run: StreamThroughputRun = {
          server,
          rpc: "UploadMessages",
          repetition,
          messages: options.messages,
          messagesPerSecond: options.messages / seconds,
          status,
          load,
        };
        runs.push(run);
        options.log(
          `stream ${server} UploadMessages rep ${repetition}: ${Math.round(run.messagesPerSecond)} messages/s (grpc-status ${status})`,
        );
      } catch (err) {
        options.log(
          `stream ${server} rep ${repetition} failed: ${err instanceof Error ? err.message : String(err)}`,
        );
      } finally {
        await running.stop();
      }
    }
  }
  return runs;
}
