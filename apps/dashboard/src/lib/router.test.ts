import { describe, expect, it } from "vitest";
import { parseRoute, roomPath } from "./router.svelte.ts";

describe("parseRoute", () => {
  it("maps every page path, and round-trips room names", () => {
    expect(parseRoute("/")).toEqual({ view: "rooms" });
    expect(parseRoute("/charts")).toEqual({ view: "metrics" });
    expect(parseRoute("/logs/")).toEqual({ view: "logs" });
    expect(parseRoute("/import")).toEqual({ view: "import" });
    expect(parseRoute(roomPath("ops.eu-1_a"))).toEqual({ view: "room", room: "ops.eu-1_a" });
    // /metrics is the server's Prometheus endpoint, never a page.
    expect(parseRoute("/metrics")).toEqual({ view: "not-found" });
    expect(parseRoute("/rooms/%E0%A4%A")).toEqual({ view: "not-found" });
  });
});
