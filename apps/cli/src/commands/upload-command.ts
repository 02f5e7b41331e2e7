import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Message,
  MessageSchema,
  type UploadResponse,
  UploadResponseSchema,
} from "@switchboard/proto/gen/chat/chat_pb";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { decodeJwt } from "jose";
import { type CliContext, type CliRuntime, createCliContext, integerIn } from "../cli-context.js";
import { CliError } from "../cli-error.js";
import { reconcileUpload, type SentMessage, type UploadReport } from "../upload-report.js";

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

/** The input's messages with their line numbers, read lazily, from line `fromLine` on. */
async function* readMessages(
  path: string,
  fromLine = 1,
): AsyncGenerator<{ message: Message; lineNumber: number }> {
  const input = path === "-" ? process.stdin : createReadStream(path);
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber++;
      if (lineNumber < fromLine) continue;
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

/** Every message of `room` after `offset`, oldest first, page by page. */
async function historyAfter(ctx: CliContext, room: string, offset: bigint): Promise<Message[]> {
  const out: Message[] = [];
  let after = offset;
  for (;;) {
    const page = await ctx.chat.getHistory({ room, afterOffset: after, limit: 500 });
    out.push(...page.messages);
    const last = page.messages.at(-1);
    if (!page.hasMore || last === undefined) return out;
    after = last.offset;
  }
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** `2 stored, 1 already stored (same clientMessageId)`. */
function describeOutcome(report: UploadReport): string {
  const parts = [`${report.stored} stored`];
  if (report.alreadyStored > 0) {
    parts.push(`${report.alreadyStored} already stored (same clientMessageId)`);
  }
  const offsets = [...report.lastStored].map(([room, offset]) => `${room} #${offset}`);
  return `${parts.join(", ")}${offsets.length > 0 ? `; last stored: ${offsets.join(", ")}` : ""}`;
}

/**
 * `upload FILE|- [--from-line N]`: streams a JSON Lines file ({room,user,content,
 * clientMessageId?} per line) through UploadMessages, with a progress bar when stderr is a
 * terminal. It reports what happened: how many messages were newly stored and how many were
 * already stored (an idempotent hit, by clientMessageId), read back from the rooms' histories
 * since UploadMessages' answer counts both alike; and on a failure, the line it stopped at,
 * what the lines before it stored, and the `--from-line` to resume with.
 */
export function addUploadCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("upload")
    .description(
      "store messages from a JSON Lines file or stdin (-), one {room,user,content,clientMessageId?} per line (UploadMessages)",
    )
    .argument("<file>", "JSON Lines file, or - for stdin")
    .option(
      "--from-line <n>",
      "skip the lines before line N (to resume an upload that stopped there)",
      integerIn(1, 1_000_000_000),
      1,
    )
    .action(async (path: string, opts: { fromLine: number }, command: Command) => {
      const ctx = createCliContext(command, runtime);
      const fromLine = opts.fromLine;
      // A file is checked whole before anything is sent, so a typo on line 900 stores nothing
      // (and the bar knows its total); stdin can only be checked as it streams.
      let total = 0;
      if (path !== "-") for await (const _ of readMessages(path, fromLine)) total++;

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

      const sent: SentMessage[] = [];
      // With a token, a server that checks tokens stores every message as the token's `sub`.
      const identity =
        ctx.options.token === undefined ? undefined : decodeJwt(ctx.options.token).sub;
      /** Each room's last offset before this upload first wrote to it (unknown: undefined). */
      const before = new Map<string, bigint | undefined>();
      let inputError: CliError | undefined;
      async function* outgoing(): AsyncGenerator<Message> {
        try {
          for await (const { message, lineNumber } of readMessages(path, fromLine)) {
            if (!before.has(message.room)) {
              // A room the server refuses (a bad name, no permission) is refused again by
              // UploadMessages, naming the line; nothing of it is read back.
              const page = await ctx.chat
                .getHistory({ room: message.room, limit: 1 }, { signal: ctx.signal })
                .catch(() => undefined);
              before.set(message.room, page?.lastOffset);
            }
            sent.push({
              line: lineNumber,
              room: message.room,
              user: message.user,
              identity,
              content: message.content,
              clientMessageId: message.clientMessageId,
            });
            yield message;
            bar?.increment();
          }
        } catch (err) {
          if (err instanceof CliError) inputError = err;
          throw err;
        }
      }
      /** What the upload did, from the rooms' histories; `processed` as in reconcileUpload. */
      const readBack = async (processed: number | undefined) => {
        const after = new Map<string, Message[]>();
        for (const [room, offset] of before) {
          if (offset !== undefined) after.set(room, await historyAfter(ctx, room, offset));
        }
        return reconcileUpload(sent, after, processed);
      };
      const resumeHint = (line: number) =>
        path === "-"
          ? `resume with the input from line ${line} on (tail -n +${line} FILE | switchboard upload -)`
          : `resume with: switchboard upload ${path} --from-line ${line}`;

      let res: UploadResponse;
      try {
        res = await ctx.chat.uploadMessages(outgoing(), { signal: ctx.signal });
      } catch (err) {
        bar?.stop();
        if (ctx.signal.aborted) throw err;
        const refusedAt =
          err instanceof ConnectError && err.code === Code.InvalidArgument
            ? /^message (\d+): /.exec(err.rawMessage)
            : null;
        const processed = refusedAt === null ? undefined : Number(refusedAt[1]);
        const badLine =
          inputError !== undefined
            ? Number(/^line (\d+):/.exec(inputError.message)?.[1])
            : processed === undefined
              ? undefined
              : sent[processed]?.line;
        let report: UploadReport | undefined;
        try {
          report = await readBack(processed);
        } catch {
          // The server is gone: nothing can be read back.
        }
        if (report === undefined) {
          ctx.status(
            `upload stopped after sending ${plural(sent.length, "message")}; the server could not be asked what it stored (messages with a clientMessageId can be sent again safely)`,
          );
        } else {
          const stoppedAt = badLine ?? report.resumeLine;
          const where = stoppedAt === undefined ? "" : ` at line ${stoppedAt}`;
          ctx.status(`upload stopped${where}; before it: ${describeOutcome(report)}`);
          const resume = report.resumeLine ?? badLine;
          if (resume !== undefined) {
            const fix =
              badLine !== undefined && resume === badLine ? `fix line ${badLine}, then ` : "";
            ctx.status(`${fix}${resumeHint(resume)}`);
          }
        }
        if (inputError !== undefined) throw inputError;
        throw withLineNumber(err, sent);
      }
      bar?.stop();
      const report = await readBack(sent.length);
      if (ctx.json) ctx.printJson(UploadResponseSchema, res);
      const summary = `uploaded ${plural(res.messageCount, "message")}: ${describeOutcome(report)}`;
      if (ctx.json) ctx.status(summary);
      else ctx.print(summary);
    });
}

// The server names a bad message by its index in the stream ("message 2: content is
// required"); the user knows it by its line in the file.
function withLineNumber(err: unknown, sent: readonly SentMessage[]): unknown {
  if (!(err instanceof ConnectError) || err.code !== Code.InvalidArgument) return err;
  const match = /^message (\d+): (.*)$/s.exec(err.rawMessage);
  const line = match === null ? undefined : sent[Number(match[1])]?.line;
  if (match === null || line === undefined) return err;
  return new ConnectError(`line ${line}: ${match[2]}`, err.code, err.metadata, undefined, err);
}
