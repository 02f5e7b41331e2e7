import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Message,
  MessageSchema,
  UploadResponseSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { type CliRuntime, createCliContext } from "../cli-context.js";
import { CliError } from "../cli-error.js";

/** One input line's message, or undefined for a blank line. @throws CliError naming the line. */
export function parseUploadLine(line: string, lineNumber: number): Message | undefined {
  if (line.trim() === "") return undefined;
  let value: JsonValue;
  try {
    value = JSON.parse(line) as JsonValue;
  } catch (err) {
    // V8 adds "(line 1 column 9)" of its one-line input; the file's line is the one that counts.
    const reason = (err as Error).message.replace(/ \(line \d+ column \d+\)$/, "");
    throw new CliError(`line ${lineNumber}: invalid JSON: ${reason}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CliError(
      `line ${lineNumber}: expected an object like {"room":…,"user":…,"content":…}`,
    );
  }
  try {
    // protobuf JSON: accepts clientMessageId and client_message_id, rejects unknown fields.
    return fromJson(MessageSchema, value);
  } catch (err) {
    throw new CliError(`line ${lineNumber}: ${(err as Error).message}`);
  }
}

/** The input's messages with their line numbers, read lazily. */
async function* readMessages(
  path: string,
): AsyncGenerator<{ message: Message; lineNumber: number }> {
  const input = path === "-" ? process.stdin : createReadStream(path);
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber++;
      const message = parseUploadLine(line, lineNumber);
      if (message !== undefined) yield { message, lineNumber };
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`cannot read ${path === "-" ? "stdin" : path}: ${(err as Error).message}`);
  } finally {
    lines.close();
  }
}

/**
 * `upload FILE|-`: streams a JSON Lines file ({room,user,content,clientMessageId?} per line)
 * through UploadMessages, with a progress bar when stderr is a terminal.
 */
export function addUploadCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("upload")
    .description(
      "store messages from a JSON Lines file or stdin (-), one {room,user,content,clientMessageId?} per line (UploadMessages)",
    )
    .argument("<file>", "JSON Lines file, or - for stdin")
    .action(async (path: string, _opts: unknown, command: Command) => {
      const ctx = createCliContext(command, runtime);
      // A file is checked whole before anything is sent, so a typo on line 900 stores nothing
      // (and the bar knows its total); stdin can only be checked as it streams.
      let total = 0;
      if (path !== "-") for await (const _ of readMessages(path)) total++;

      const stderr = runtime.stderr as NodeJS.WriteStream;
      const bar =
        stderr.isTTY === true && !ctx.json
          ? new SingleBar({
              stream: stderr,
              format:
                total > 0
                  ? "upload [{bar}] {value}/{total} messages {percentage}% eta {eta_formatted}"
                  : "upload {value} messages sent",
              hideCursor: true,
              clearOnComplete: true,
            })
          : undefined;
      bar?.start(total, 0);

      const lineOf: number[] = [];
      let inputError: CliError | undefined;
      async function* outgoing(): AsyncGenerator<Message> {
        try {
          for await (const { message, lineNumber } of readMessages(path)) {
            lineOf.push(lineNumber);
            yield message;
            bar?.increment();
          }
        } catch (err) {
          if (err instanceof CliError) inputError = err;
          throw err;
        }
      }
      try {
        const res = await ctx.chat.uploadMessages(outgoing(), { signal: ctx.signal });
        bar?.stop();
        if (ctx.json) ctx.printJson(UploadResponseSchema, res);
        else {
          const noun = res.messageCount === 1 ? "message" : "messages";
          ctx.print(`uploaded ${res.messageCount} ${noun} (last offset ${res.lastOffset})`);
        }
      } catch (err) {
        bar?.stop();
        if (inputError !== undefined) {
          const sent = lineOf.length > 0 ? " (the lines before it were sent)" : "";
          throw new CliError(`${inputError.message}${sent}`);
        }
        throw withLineNumber(err, lineOf);
      }
    });
}

// The server names a bad message by its index in the stream ("message 2: content is
// required"); the user knows it by its line in the file.
function withLineNumber(err: unknown, lineOf: readonly number[]): unknown {
  if (!(err instanceof ConnectError) || err.code !== Code.InvalidArgument) return err;
  const match = /^message (\d+): (.*)$/s.exec(err.rawMessage);
  const line = match === null ? undefined : lineOf[Number(match[1])];
  if (match === null || line === undefined) return err;
  return new ConnectError(`line ${line}: ${match[2]}`, err.code, err.metadata, undefined, err);
}
