// What the attack tests watch besides the attack: a legitimate client, and the server's /metrics.
import http from "node:http";
import https from "node:https";

/** What a {@link LegitProbe} saw. */
export interface ProbeResult {
  /** Calls answered with 200. */
  served: number;
  /** Calls that failed, or were answered with anything but 200 (with what). */
  failures: string[];
  /** The slowest answer, ms. */
  maxMs: number;
}

/**
 * A legitimate client during an attack: a Connect ListRooms call on a new connection every
 * `intervalMs`, one at a time, from `localAddress` (another loopback address than the attacker's
 * 127.0.0.1 where a per-address cap is under test). Each call must be answered with 200.
 */
export class LegitProbe {
  private result: ProbeResult = { served: 0, failures: [], maxMs: 0 };
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly port: number,
    private readonly options: { localAddress?: string; ca?: Buffer; intervalMs?: number } = {},
  ) {
    this.done = this.loop();
  }

  /** Stops the probe and returns what it saw. */
  async stop(): Promise<ProbeResult> {
    this.running = false;
    await this.done;
    return this.result;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const started = performance.now();
      try {
        const status = await this.call();
        if (status === 200) this.result.served++;
        else this.result.failures.push(`HTTP ${status}`);
      } catch (err) {
        this.result.failures.push(String(err));
      }
      this.result.maxMs = Math.max(this.result.maxMs, performance.now() - started);
      await new Promise((r) => setTimeout(r, this.options.intervalMs ?? 100));
    }
  }

  private call(): Promise<number> {
    const { ca, localAddress } = this.options;
    const request = ca === undefined ? http.request : https.request;
    return new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.port,
          path: "/chat.ChatService/ListRooms",
          method: "POST",
          headers: { "content-type": "application/json", connection: "close" },
          agent: false,
          timeout: 5_000,
          ...(localAddress === undefined ? {} : { localAddress }),
          ...(ca === undefined ? {} : { ca, servername: "localhost" }),
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error("no answer within 5 s")));
      req.on("error", reject);
      req.end("{}");
    });
  }
}

/** GET /metrics of the server on `port` (over TLS when `ca` is given). */
export function scrape(port: number, ca?: Buffer): Promise<string> {
  const request = ca === undefined ? http.request : https.request;
  return new Promise<string>((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/metrics",
        agent: false,
        ...(ca === undefined ? {} : { ca, servername: "localhost" }),
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve(text));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** The value of one sample in a Prometheus text exposition (`name{labels} value`), or undefined. */
export function sample(text: string, name: string, labels = ""): number | undefined {
  const prefix = labels === "" ? `${name} ` : `${name}{${labels}} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(prefix.length));
}

/** `switchboard_connections_closed_total{reason}` on the server on `port`. */
export async function closedFor(port: number, reason: string, ca?: Buffer): Promise<number> {
  const text = await scrape(port, ca);
  return sample(text, "switchboard_connections_closed_total", `reason="${reason}"`) ?? 0;
}
