import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { requestRulesInterceptor } from "@switchboard/client";
import { createNodeTransport, PROTOCOLS, type Protocol } from "@switchboard/client/node";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { LogService } from "@switchboard/proto/gen/chat/log_pb";
import { type Command, InvalidArgumentError, Option } from "commander";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { CliError, EXIT_USAGE, type StopSignal } from "./cli-error.js";

/** The options every command takes, as commander parses them. */
export interface GlobalOptions {
  url: string;
  protocol: Protocol;
  http2?: true;
  json?: true;
  token?: string;
}

/** What a command's action works with: clients for the chosen transport, output, the Ctrl-C signal. */
export interface CliContext {
  readonly options: GlobalOptions;
  /** Aborted by Ctrl-C (SIGINT) or SIGTERM. */
  readonly signal: AbortSignal;
  readonly chat: Client<typeof ChatService>;
  readonly logs: Client<typeof LogService>;
  /** True with `--json`: stdout carries one JSON object per line and nothing else. */
  readonly json: boolean;
  /** Writes one line to stdout. */
  print(line: string): void;
  /** Writes a message as one line of protobuf JSON (every field, defaults included) to stdout. */
  printJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): void;
  /** Writes one line to stderr: progress and state, never results. */
  status(line: string): void;
}

/** The process-wide things a command needs besides its options. */
export interface CliRuntime {
  /** Aborted by SIGINT (Ctrl-C) or SIGTERM. */
  signal: AbortSignal;
  /** Which of the two aborted `signal` (undefined while it is not aborted). */
  interruptedBy(): StopSignal | undefined;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

function parseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError("must be an absolute URL such as http://127.0.0.1:8080");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidArgumentError("must be an http:// or https:// URL");
  }
  return value.replace(/\/+$/, "");
}

/** Adds --url, --protocol, --http2, --json and --token to the top-level command. */
export function addGlobalOptions(program: Command): Command {
  return program
    .addOption(
      new Option("--url <url>", "server base URL")
        .env("SWITCHBOARD_URL")
        .default("http://127.0.0.1:8080")
        .argParser(parseUrl),
    )
    .addOption(
      new Option("--protocol <name>", "wire protocol").choices(PROTOCOLS).default("connect"),
    )
    .option("--http2", "Connect and gRPC-Web over HTTP/2 (h2c on http://); gRPC always is")
    .option("--json", "machine-readable output: one protobuf JSON object per line")
    .addOption(
      new Option("--token <token>", "bearer token sent as Authorization").env("SWITCHBOARD_TOKEN"),
    );
}

/**
 * The context for a command's action, from the global options it was called with.
 * `forceHttp2` is for bidi streaming, which needs HTTP/2 on every protocol.
 */
export function createCliContext(
  command: Command,
  runtime: CliRuntime,
  { forceHttp2 = false }: { forceHttp2?: boolean } = {},
): CliContext {
  const options = command.optsWithGlobals<GlobalOptions>();
  if (options.token !== undefined) checkTokenShape(options.token);
  const transport: Transport = createNodeTransport({
    baseUrl: options.url,
    protocol: options.protocol,
    httpVersion: options.http2 === true || forceHttp2 ? "2" : "1.1",
    ...(options.token === undefined ? {} : { token: options.token }),
    // A request that breaks the contract's rules (a bad room name, a blank user name)
    // fails here with the server's own answer, before anything is sent.
    interceptors: [requestRulesInterceptor()],
  });
  const write = (stream: NodeJS.WritableStream, line: string) => {
    stream.write(`${line}\n`);
  };
  return {
    options,
    signal: runtime.signal,
    chat: createClient(ChatService, transport),
    logs: createClient(LogService, transport),
    json: options.json === true,
    print: (line) => write(runtime.stdout, line),
    printJson: (schema, message) =>
      write(runtime.stdout, JSON.stringify(toJson(schema, message, { alwaysEmitImplicit: true }))),
    status: (line) => write(runtime.stderr, line),
  };
}

/**
 * Refuses a token that is not a JWT (header.payload.signature, base64url JSON): Switchboard
 * verifies only JWTs (AUTH_JWT_SECRET, AUTH_JWKS_FILE), so such a token can never be accepted,
 * and a server without authentication ignores the Authorization header and cannot say so; the
 * CLI is the only one that can catch the mistake. The signature is not checked here (the CLI
 * does not hold the key).
 *
 * @throws CliError with exit status 2 (usage), naming where the token came from.
 */
export function checkTokenShape(token: string): void {
  try {
    decodeProtectedHeader(token);
    decodeJwt(token);
  } catch (err) {
    throw new CliError(
      `--token (or SWITCHBOARD_TOKEN) is not a JWT: ${(err as Error).message}; mint one with \`switchboard token\``,
      EXIT_USAGE,
    );
  }
}

/** Parses an offset option: a non-negative integer. @throws InvalidArgumentError otherwise. */
export function parseOffset(value: string): bigint {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("must be a non-negative integer");
  return BigInt(value);
}

/** A parser for integers from `min` to `max`, for commander. */
export function integerIn(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

/**
 * Runs a streaming command until it ends or the user presses Ctrl-C (or SIGTERM arrives); an
 * interrupted stream is a clean end (exit 0), so the cancellation error it raises is swallowed.
 */
export async function untilInterrupted(ctx: CliContext, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (ctx.signal.aborted) return;
    throw err;
  }
}
