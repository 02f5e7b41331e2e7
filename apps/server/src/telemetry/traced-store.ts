import {
  type Attributes,
  type Context,
  context,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { overriding } from "../domain/room-directory.js";
import type {
  AppendResult,
  HistoryPage,
  LiveMessage,
  MessageDraft,
  MessageStore,
  RoomFeed,
} from "../store/message-store.js";

/** What the traced store needs of the process's tracing (telemetry/tracing.ts, Tracing). */
export interface StoreTracing {
  readonly tracer: Tracer;
  /** `span`'s W3C traceparent when it is sampled, else undefined. */
  traceparentOf(span: Span): string | undefined;
  /** The remote context a traceparent names; undefined when it is not a valid one. */
  contextOf(traceparent: string): Context | undefined;
}

/** The attributes of every span about one room's messages (messaging semantic conventions). */
function roomAttributes(room: string): Attributes {
  return { "messaging.system": "switchboard", "messaging.destination.name": room };
}

/**
 * A store whose work is traced (app.ts wraps the store in it only when tracing is on):
 *
 * - `store.append` (kind INTERNAL, `messaging.operation.type` send): a child of the active span
 *   (the RPC's, edge/rpc/observe.ts), around one append; its attributes name the room, the
 *   message's id and, once stored, its offset (`switchboard.offset`) and whether it was a repeat
 *   (`switchboard.duplicate`). When it is sampled, each draft carries its `traceparent`
 *   (MessageDraft.trace) to the room's feed on every process and node: the Redis feed's payload,
 *   the WORKERS=N wake-up, the local feed.
 * - `store.read` (INTERNAL): a child of the active span, around one history page (GetHistory, a
 *   subscription's replay, an epoch check); `switchboard.messages` is the page's length.
 * - `room.deliver` (kind CONSUMER, `messaging.operation.type` process): on each process whose
 *   feed announces a message that carries a trace context, around that process's fan-out of it
 *   (domain/room-hub.ts: one push per subscriber of the room there; `switchboard.deliveries` is
 *   how many). It links to the append's span (a span link, as the messaging semantic conventions
 *   ask of a consumer) and is its child too, so that a sender's trace shows every node's
 *   delivery, and the sender's sampling decision holds for them: an unsampled send makes no
 *   delivery span anywhere. A message read back from the log (a Redis feed filling a gap, a
 *   history replay) carries no trace context, and its delivery no span.
 *
 * Store work that no traced call started (a LEAVE after the presence grace, the presence sweep)
 * makes no span: `store.append` and `store.read` need an active span to be children of.
 */
export function tracedStore<S extends MessageStore>(
  store: S,
  tracing: StoreTracing,
  delivered: () => number,
): S {
  const { tracer } = tracing;
  const parentSpan = (): boolean => trace.getSpan(context.active())?.isRecording() === true;
  const fail = (span: Span, err: unknown) => {
    span.recordException(err instanceof Error ? err : String(err));
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: err instanceof Error ? err.message : String(err),
    });
    span.end();
  };

  const append = (drafts: readonly MessageDraft[], signal?: AbortSignal) => {
    if (!parentSpan()) return store.append(drafts, signal);
    const first = drafts[0];
    const span = tracer.startSpan("store.append", {
      kind: SpanKind.INTERNAL,
      attributes: {
        ...roomAttributes(first?.room ?? ""),
        "messaging.operation.type": "send",
        "messaging.message.id": first?.id ?? "",
        "switchboard.kind": first?.kind ?? "",
        "messaging.batch.message_count": drafts.length,
      },
    });
    const traceparent = tracing.traceparentOf(span);
    const traced =
      traceparent === undefined ? drafts : drafts.map((d) => ({ ...d, trace: traceparent }));
    return context
      .with(trace.setSpan(context.active(), span), () => store.append(traced, signal))
      .then(
        (results: AppendResult[]) => {
          const r = results[0];
          if (r !== undefined) {
            span.setAttribute("switchboard.offset", r.message.offset);
            span.setAttribute("switchboard.duplicate", r.duplicate);
          }
          span.end();
          return results;
        },
        (err: unknown) => {
          fail(span, err);
          throw err;
        },
      );
  };

  const read: MessageStore["read"] = (query, signal) => {
    if (!parentSpan()) return store.read(query, signal);
    const span = tracer.startSpan("store.read", {
      kind: SpanKind.INTERNAL,
      attributes: { ...roomAttributes(query.room), "switchboard.limit": query.limit },
    });
    return context
      .with(trace.setSpan(context.active(), span), () => store.read(query, signal))
      .then(
        (page: HistoryPage) => {
          span.setAttribute("switchboard.messages", page.messages.length);
          span.end();
          return page;
        },
        (err: unknown) => {
          fail(span, err);
          throw err;
        },
      );
  };

  const deliver = (feed: RoomFeed, message: LiveMessage): void => {
    const parent = message.trace === undefined ? undefined : tracing.contextOf(message.trace);
    if (parent === undefined) {
      feed.message(message);
      return;
    }
    const publish = trace.getSpanContext(parent);
    const span = tracer.startSpan(
      "room.deliver",
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          ...roomAttributes(message.room),
          "messaging.operation.type": "process",
          "messaging.message.id": message.id,
          "switchboard.offset": message.offset,
        },
        ...(publish === undefined ? {} : { links: [{ context: publish }] }),
      },
      parent,
    );
    const before = delivered();
    try {
      feed.message(message);
    } finally {
      span.setAttribute("switchboard.deliveries", delivered() - before);
      span.end();
    }
  };

  const watch: MessageStore["watch"] = (room, feed) =>
    store.watch(room, {
      message: (message) => deliver(feed, message),
      lost: (err) => feed.lost(err),
    });

  return overriding<S>(store, { append, read, watch } as Partial<S>);
}
