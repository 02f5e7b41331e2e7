import { Writable } from "node:stream";

/** One structured log line as pino wrote it. */
export interface LogLine {
  /** pino's numeric level: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal. */
  level: number;
  /** ms since the Unix epoch. */
  time: number;
  msg: string;
  /** Every other field of the line. */
  fields: Record<string, unknown>;
}

type Listener = (line: LogLine) => void;

/**
 * A pino destination that keeps the last `capacity` lines in a ring buffer and hands each new
 * line to live listeners (LogService.StreamLogs). Lines are the JSON pino writes, parsed once.
 */
export class LogTail extends Writable {
  private readonly ring: LogLine[] = [];
  private next = 0;
  private readonly readers = new Set<Listener>();

  constructor(private readonly capacity = 1000) {
    super({ decodeStrings: false });
  }

  override _write(chunk: string | Buffer, _encoding: BufferEncoding, callback: () => void): void {
    for (const text of String(chunk).split("\n")) {
      if (text === "") continue;
      const line = parse(text);
      if (line === undefined) continue;
      if (this.ring.length < this.capacity) this.ring.push(line);
      else this.ring[this.next] = line;
      this.next = (this.next + 1) % this.capacity;
      for (const listener of this.readers) listener(line);
    }
    callback();
  }

  /** The newest `count` lines at or above `minLevel`, oldest first. */
  recent(count: number, minLevel: number): LogLine[] {
    const ordered =
      this.ring.length < this.capacity
        ? this.ring
        : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
    const matching = ordered.filter((l) => l.level >= minLevel);
    return count <= 0 ? [] : matching.slice(-count);
  }

  /** Calls `listener` with every new line until the returned function is called. */
  subscribe(listener: Listener): () => void {
    this.readers.add(listener);
    return () => this.readers.delete(listener);
  }
}

function parse(text: string): LogLine | undefined {
  try {
    const { level, time, msg, ...fields } = JSON.parse(text) as Record<string, unknown>;
    return {
      level: typeof level === "number" ? level : 30,
      time: typeof time === "number" ? time : Date.now(),
      msg: typeof msg === "string" ? msg : "",
      fields,
    };
  } catch {
    return undefined;
  }
}
