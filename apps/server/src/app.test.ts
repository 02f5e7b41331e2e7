import pino from "pino";
import { describe, expect, it } from "vitest";
import { buildApp } from "./app.js";
import { loadConfig } from "./config.js";
import { LogTail } from "./telemetry/log-tail.js";

describe("buildApp", () => {
  it("gives HTTP/2 sessions one owner: the server has one `session` listener", async () => {
    const app = await buildApp(loadConfig([], { STORE: "memory" }), {
      logger: pino({ level: "silent" }),
      logTail: new LogTail(),
    });
    await app.ready();
    // edge/transport/http2-sessions.ts: window, reset budget, keepalive, idle and the shutdown
    // GOAWAY are one listener's work; a second owner would be a second listener.
    expect(app.server.listenerCount("session")).toBe(1);
    await app.close();
  });
});
