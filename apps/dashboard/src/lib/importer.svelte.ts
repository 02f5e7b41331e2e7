import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { type ChatService, MessageSchema } from "@switchboard/proto/gen/chat/chat_pb";
import { formatCallError } from "./connect-errors.ts";
import { shortHash } from "./ids.ts";

/** SendMessage calls in flight at once during an import. */
export const IMPORT_CONCURRENCY = 8;
/** Failed lines listed (the count includes all of them). */
const MAX_LISTED_FAILURES = 100;

/** One line of the file, ready to send. */
export interface ImportLine {
  /** 1-based line number in the file. */
  line: number;
  room: string;
  user: string;
  content: string;
  clientMessageId: string;
}

/** A line that could not be parsed or sent. */
export interface ImportFailure {
  line: number;
  reason: string;
}

/**
 * Parses JSON Lines: one chat.Message in protobuf JSON per line (`{"user": …, "content": …,
 * "room": …, "clientMessageId": …}`; proto names such as `client_message_id` are accepted too).
 * A missing room or user takes the default; a missing client_message_id is derived from the file
 * and line, so importing the same file again stores nothing twice. Blank lines are skipped. A
 * key the schema lacks (a misspelt `clientMessageID`) makes its line a failure, as the server
 * refuses it, rather than being dropped with the idempotency key it was meant to carry.
 */
export function parseJsonLines(
  text: string,
  defaults: { room: string; user: string; fileKey: string },
): { lines: ImportLine[]; failures: ImportFailure[] } {
  const lines: ImportLine[] = [];
  const failures: ImportFailure[] = [];
  const rows = text.split(/\r?\n/);
  rows.forEach((row, i) => {
    const line = i + 1;
    if (row.trim() === "") return;
    try {
      const m = fromJson(MessageSchema, JSON.parse(row) as JsonValue);
      lines.push({
        line,
        room: m.room || defaults.room,
        user: m.user || defaults.user,
        content: m.content,
        clientMessageId: m.clientMessageId || `import-${defaults.fileKey}-${line}`,
      });
    } catch (err) {
      failures.push({ line, reason: err instanceof Error ? err.message : String(err) });
    }
  });
  return { lines, failures };
}

/** A stable key for a picked file: the same file imported again gets the same message ids. */
export function fileKey(file: { name: string; size: number; lastModified: number }): string {
  return shortHash(`${file.name}|${file.size}|${file.lastModified}`);
}

/**
 * Sends a JSON Lines file as messages with unary SendMessage calls, {@link IMPORT_CONCURRENCY} in
 * flight (a browser cannot open the client stream UploadMessages would need), with progress.
 */
export class Importer {
  #total = $state(0);
  #sent = $state(0);
  #failedCount = $state(0);
  #failures = $state.raw<ImportFailure[]>([]);
  #running = $state(false);
  #finished = $state(false);
  #abort: AbortController | undefined;

  /** Lines to send (parsed ones) plus lines that failed to parse. */
  get total(): number {
    return this.#total;
  }

  /** Lines sent or failed so far. */
  get done(): number {
    return this.#sent + this.#failedCount;
  }

  get sent(): number {
    return this.#sent;
  }

  get failedCount(): number {
    return this.#failedCount;
  }

  /** The first failures, by line. */
  get failures(): readonly ImportFailure[] {
    return this.#failures;
  }

  get running(): boolean {
    return this.#running;
  }

  /** The last import ran to its end (not cancelled). */
  get finished(): boolean {
    return this.#finished;
  }

  /** Imports `text`; resolves when every line is sent or failed, or the import is cancelled. */
  async run(
    client: Client<typeof ChatService>,
    text: string,
    defaults: { room: string; user: string; fileKey: string },
  ): Promise<void> {
    if (this.#running) return;
    const abort = new AbortController();
    this.#abort = abort;
    const { lines, failures } = parseJsonLines(text, defaults);
    this.#total = lines.length + failures.length;
    this.#sent = 0;
    this.#failedCount = failures.length;
    this.#failures = failures.slice(0, MAX_LISTED_FAILURES);
    this.#running = true;
    this.#finished = false;
    let next = 0;
    const worker = async () => {
      while (!abort.signal.aborted) {
        const item = lines[next++];
        if (item === undefined) return;
        try {
          await client.sendMessage(
            {
              room: item.room,
              user: item.user,
              content: item.content,
              clientMessageId: item.clientMessageId,
            },
            { signal: abort.signal },
          );
          this.#sent++;
        } catch (err) {
          if (abort.signal.aborted) return;
          this.#failedCount++;
          if (this.#failures.length < MAX_LISTED_FAILURES) {
            const failure = { line: item.line, reason: formatCallError(err) };
            this.#failures = [...this.#failures, failure].sort((a, b) => a.line - b.line);
          }
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: IMPORT_CONCURRENCY }, worker));
      this.#finished = !abort.signal.aborted;
    } finally {
      this.#running = false;
      this.#abort = undefined;
    }
  }

  cancel(): void {
    this.#abort?.abort();
  }
}
