import v8 from "node:v8";
import vm from "node:vm";
import {
  Code,
  ConnectError,
  createClient,
  createContextValues,
  createRouterTransport,
} from "@connectrpc/connect";
import { ChatService } from "@switchboard/proto/gen/chat/chat_pb";
import { describe, expect, it } from "vitest";
import type { LimitCounter } from "../../store/limits.js";
import { StoreUnavailableError } from "../../store/message-store.js";
import { createLimitsInterceptor, type LimitsConfig } from "./limits.js";

/** A counter that records what it is asked and answers as told. */
function recordingCounter(answer: { wait?: number; fail?: Error } = {}) {
  const calls: string[] = [];
  const counter: LimitCounter = {
    async takePublishToken(identity) {
      calls.push(`take ${identity}`);
      if (answer.fail) throw answer.fail;
      return answer.wait ?? 0;
    },
    async acquireStream(identity) {
      calls.push(`acquire ${identity}`);
      if (answer.fail) throw answer.fail;
      return { release: () => calls.push(`release ${identity}`) };
    },
    async close() {},
  };
  return { counter, calls };
}

function chatWith(config: LimitsConfig, counter: LimitCounter) {
  const transport = createRouterTransport(
    (router) =>
      router.service(ChatService, {
        sendMessage: () => ({}),
        async *subscribeMessages() {
          yield {};
        },
      }),
    { router: { interceptors: [createLimitsInterceptor(config, counter)] } },
  );
  return createClient(ChatService, transport);
}

describe("createLimitsInterceptor with a counter", () => {
  it("never asks the counter about a limit that is off", async () => {
    const { counter, calls } = recordingCounter({ fail: new Error("must not be called") });
    const chat = chatWith(
      { publishRatePerS: 0, publishBurst: 100, maxStreamsPerIdentity: 0 },
      counter,
    );
    await chat.sendMessage({ room: "r", user: "u", content: "x" });
    for await (const _ of chat.subscribeMessages({ room: "r" })) {
      // drained
    }
    expect(calls).toEqual([]);
  });

  it("asks it once per publish and per stream, and releases the stream's slot at its end", async () => {
    const { counter, calls } = recordingCounter();
    const chat = chatWith(
      { publishRatePerS: 5, publishBurst: 10, maxStreamsPerIdentity: 3 },
      counter,
    );
    await chat.sendMessage({ room: "r", user: "u", content: "x" });
    for await (const _ of chat.subscribeMessages({ room: "r" })) {
      // drained
    }
    expect(calls).toEqual(["take unknown", "acquire unknown", "release unknown"]);
  });

  it("answers its wait as ResourceExhausted with retry-after-ms, and its failure as Unavailable", async () => {
    const config = { publishRatePerS: 5, publishBurst: 10, maxStreamsPerIdentity: 3 };
    const limited = chatWith(config, recordingCounter({ wait: 180 }).counter);
    const err = await limited
      .sendMessage({ room: "r", user: "u", content: "x" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({
      code: Code.ResourceExhausted,
      rawMessage: "publish rate exceeded (PUBLISH_RATE 5/s); retry in 180 ms",
    });
    expect((err as ConnectError).metadata.get("retry-after-ms")).toBe("180");
    const down = chatWith(
      config,
      recordingCounter({ fail: new StoreUnavailableError("redis unavailable: not connected") })
        .counter,
    );
    const unavailable = await down
      .sendMessage({ room: "r", user: "u", content: "x" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(unavailable).toMatchObject({
      code: Code.Unavailable,
      rawMessage: "redis unavailable: not connected",
    });
  });
});

describe("createLimitsInterceptor and an open stream", () => {
  /** Forces a full GC (V8's flag set at run time; the function from a fresh context). */
  function gc(): void {
    v8.setFlagsFromString("--expose-gc");
    (vm.runInNewContext("gc") as () => void)();
  }

  it.each([0, 4])(
    "keeps nothing of the request alive while the stream is open (stream cap %i)",
    async (cap) => {
      const { counter } = recordingCounter();
      const interceptor = createLimitsInterceptor(
        { publishRatePerS: 1, publishBurst: 10, maxStreamsPerIdentity: cap },
        counter,
      );
      const response = { stream: true, message: (async function* () {})() };
      const next = (async () => response) as never;
      // The request (and the body pipeline it carries, on the server) is the call's to drop once
      // the stream has started; an open stream lives for hours.
      let request: object | undefined = {
        stream: true,
        method: ChatService.method.subscribeMessages,
        signal: new AbortController().signal,
        contextValues: createContextValues(),
        message: (async function* () {})(),
      };
      const dropped = new WeakRef(request);
      const res = await interceptor(next)(request as never);
      request = undefined;
      await new Promise((resolve) => setImmediate(resolve));
      gc();
      expect(dropped.deref(), "the request, after the stream started").toBeUndefined();
      expect(res.stream).toBe(true);
    },
  );
});
