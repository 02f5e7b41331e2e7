import { context, propagation, ROOT_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { describe, expect, it } from "vitest";
import { traceContextInterceptor } from "./trace-context.js";

/** Runs the interceptor on a request with empty headers; resolves with the headers sent. */
async function headersSent(): Promise<Headers> {
  const header = new Headers();
  let sent: Headers | undefined;
  const next = async (req: { header: Headers }) => {
    sent = req.header;
    return {} as never;
  };
  await traceContextInterceptor(next as never)({ header } as never);
  return sent as Headers;
}

const spanContext = {
  traceId: "0af7651916cd43dd8448eb211c80319c",
  spanId: "b7ad6b7169203331",
  traceFlags: TraceFlags.SAMPLED,
};

// One file, in order: the API's globals live as long as the process.
describe("traceContextInterceptor", () => {
  it("adds nothing while the application registered no propagator", async () => {
    const active = trace.setSpanContext(ROOT_CONTEXT, spanContext);
    const sent = await context.with(active, headersSent);
    expect(sent.get("traceparent")).toBeNull();
  });

  it("injects the active span's traceparent (and tracestate) once a propagator is registered", async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const active = trace.setSpanContext(ROOT_CONTEXT, spanContext);
    const sent = await context.with(active, headersSent);
    expect(sent.get("traceparent")).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    // Outside any span: nothing to propagate.
    expect((await headersSent()).get("traceparent")).toBeNull();
    context.disable();
    propagation.disable();
  });
});
