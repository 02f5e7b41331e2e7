import { Code, ConnectError } from "@connectrpc/connect";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { Rooms } from "../domain/rooms.js";
import { shutdownError } from "../ops/shutdown.js";
import { createMemoryStore } from "../store/memory/message-store.js";
import { createMemoryPresence } from "../store/memory/presence.js";
import { Telemetry } from "../telemetry/telemetry.js";
import { createSubscriptions } from "./subscription.js";

function setup() {
  const rooms = new Rooms(createMemoryStore(), createMemoryPresence(), {
    maxContentBytes: 4096,
    maxUserBytes: 128,
    subscriberQueueLimit: 64,
  });
  const telemetry = new Telemetry({ requests: () => 0, ...rooms.counts });
  const subscribe = createSubscriptions({ rooms, telemetry, logger: pino({ level: "silent" }) });
  return {
    rooms,
    telemetry,
    subscribe,
    dispose() {
      telemetry.close();
      rooms.close();
    },
  };
}

const request = (room: string) =>
  ({ $typeName: "chat.SubscribeRequest", room, user: "zoe", epoch: "" }) as const;

describe("a SubscribeMessages subscription whose call ends while nobody reads it", () => {
  // The writer may be stuck in a write that never completes (connect-node waits for `drain` on
  // an HTTP/2 stream destroyed meanwhile): the subscription must end on the call's abort alone.
  it("leaves the room, releases presence and tells its observers at once", async () => {
    const { rooms, subscribe, dispose } = setup();
    const controller = new AbortController();
    try {
      const subscription = await subscribe(request("r"), controller.signal);
      const ended: unknown[] = [];
      subscription.observe({ onEnd: (reason) => ended.push(reason) });
      expect(rooms.hub.counts().get("r")).toBe(1);
      expect((await rooms.members("r")).map((m) => m.user)).toEqual(["zoe"]);

      controller.abort(new ConnectError("client went away", Code.Canceled));
      expect(ended).toHaveLength(1);
      expect(ConnectError.from(ended[0]).code).toBe(Code.Canceled);
      expect(rooms.hub.counts().get("r")).toBeUndefined();
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await rooms.members("r")).toEqual([]);
    } finally {
      dispose();
    }
  });

  it("at shutdown, still hands the writer the welcome, then the offset to resume from", async () => {
    const { subscribe, dispose } = setup();
    const controller = new AbortController();
    try {
      const subscription = await subscribe(request("s"), controller.signal);
      controller.abort(shutdownError());
      expect((await subscription.next())?.[0]?.content).toBe("Welcome to room s, zoe!");
      await expect(subscription.next()).rejects.toThrow(/server shutting down; resume from offset/);
    } finally {
      dispose();
    }
  });
});
