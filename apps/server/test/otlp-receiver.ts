// A real OTLP/HTTP trace receiver for the tests: a node:http server on a free loopback port that
// accepts `POST /v1/traces` in OTLP/JSON (the exporter's `http/json` protocol:
// OTEL_EXPORTER_OTLP_PROTOCOL=http/json) and keeps every span it is sent, decoded. The OTLP/JSON
// encoding (opentelemetry-proto, "JSON Protobuf Encoding"): trace and span ids are hex strings,
// enums are numbers, attribute values are `AnyValue` objects ({stringValue}, {intValue}, …).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One span as a receiver got it, flattened for assertions. */
export interface ReceivedSpan {
  /** The resource's `service.name`. */
  service: string;
  /** The resource's `process.pid`. */
  pid: number | undefined;
  traceId: string;
  spanId: string;
  /** The W3C tracestate the span carries ("" for none). */
  traceState: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  links: Array<{ traceId: string; spanId: string }>;
  /** OTLP StatusCode: 0 UNSET, 1 OK, 2 ERROR. */
  status: { code: number; message: string };
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface KeyValue {
  key: string;
  value: AnyValue;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  traceState?: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: KeyValue[];
  links?: Array<{ traceId: string; spanId: string }>;
  status?: { code?: number; message?: string };
}
interface ExportRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: Array<{ spans?: OtlpSpan[] }>;
  }>;
}

function plainValue(v: AnyValue): string | number | boolean {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.boolValue !== undefined) return v.boolValue;
  return v.doubleValue ?? "";
}

function attributesOf(list: KeyValue[] | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, plainValue(kv.value)]));
}

/** Decodes one OTLP/JSON ExportTraceServiceRequest into its spans. */
export function decodeExport(body: string): ReceivedSpan[] {
  const request = JSON.parse(body) as ExportRequest;
  const spans: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = attributesOf(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        spans.push({
          service: String(resource["service.name"] ?? ""),
          pid: typeof resource["process.pid"] === "number" ? resource["process.pid"] : undefined,
          traceId: s.traceId,
          spanId: s.spanId,
          traceState: s.traceState ?? "",
          parentSpanId: s.parentSpanId ?? "",
          name: s.name,
          kind: s.kind,
          attributes: attributesOf(s.attributes),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? "" },
        });
      }
    }
  }
  return spans;
}

/**
 * The receiver: every span it was sent ({@link spans}), and the number of export requests.
 * `keep: false` discards what it gets (a collector that costs the exporter nothing: the bench).
 */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  requests = 0;
  private waiters = new Set<() => void>();

  private constructor(
    private readonly server: Server,
    private readonly keep: boolean,
  ) {}

  static async start(options: { keep?: boolean } = {}): Promise<OtlpReceiver> {
    const server = createServer();
    const receiver = new OtlpReceiver(server, options.keep ?? true);
    server.on("request", (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (req.method !== "POST" || req.url !== "/v1/traces") {
          res.writeHead(404).end();
          return;
        }
        receiver.requests++;
        if (receiver.keep) {
          try {
            receiver.spans.push(...decodeExport(Buffer.concat(chunks).toString("utf8")));
          } catch {
            res.writeHead(400).end();
            return;
          }
          for (const w of receiver.waiters) w();
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return receiver;
  }

  /** The OTEL_EXPORTER_OTLP_ENDPOINT to give a server: `http://127.0.0.1:PORT`. */
  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /**
   * Resolves with the spans once `predicate` holds for what was received.
   * @throws after `timeoutMs`, naming `what`, with the names of the spans received so far.
   */
  async waitFor(
    predicate: (spans: readonly ReceivedSpan[]) => boolean,
    what: string,
    timeoutMs = 10_000,
  ): Promise<readonly ReceivedSpan[]> {
    if (predicate(this.spans)) return this.spans;
    let notify = () => {};
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        notify = () => {
          if (predicate(this.spans)) resolve();
        };
        this.waiters.add(notify);
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `timed out after ${timeoutMs} ms waiting for ${what}; received: ${
                  this.spans.map((s) => `${s.service}:${s.name}`).join(", ") || "nothing"
                }`,
              ),
            ),
          timeoutMs,
        );
      });
      return this.spans;
    } finally {
      this.waiters.delete(notify);
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The environment that points a server's tracing at `receiver`, exporting soon after each span. */
export function tracingEnv(receiver: OtlpReceiver, service: string): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: service,
    OTEL_BSP_SCHEDULE_DELAY: "50",
  };
}
