import { describe, expect, it } from "vitest";
import { detectProtocol } from "./protocol.js";

describe("detectProtocol", () => {
  it.each([
    // [content type, method, protocol, wire: [binary, text, stream] or undefined]
    ["application/grpc", "POST", "grpc", [true, false, true]],
    ["application/grpc+proto", "POST", "grpc", [true, false, true]],
    ["application/grpc+json", "POST", "grpc", [false, false, true]],
    ["APPLICATION/GRPC+JSON; charset=utf-8", "POST", "grpc", [false, false, true]],
    ["application/grpc-web", "POST", "grpc-web", [true, false, true]],
    ["application/grpc-web+json", "POST", "grpc-web", [false, false, true]],
    ["application/grpc-web-text", "POST", "grpc-web", [true, true, true]],
    ["application/proto", "POST", "connect", [true, false, false]],
    ["application/json", "POST", "connect", [false, false, false]],
    ["application/json; charset=utf-8", "POST", "connect", [false, false, false]],
    ["application/connect+proto", "POST", "connect", [true, false, true]],
    ["application/connect+json", "POST", "connect", [false, false, true]],
    // Told by prefix, so that a refusal answers in the caller's protocol; no wire.
    ["application/grpc+cbor", "POST", "grpc", undefined],
    ["application/grpc-webby", "POST", "grpc-web", undefined],
    [" application/grpc", "POST", "grpc", undefined],
    ["text/plain", "POST", "connect", undefined],
    [undefined, "POST", "connect", undefined],
    [null, "GET", "connect", undefined],
    // A GET is no POST: its protocol still, never a wire.
    ["application/grpc", "GET", "grpc", undefined],
    ["application/json", "GET", "connect", undefined],
  ] as const)("%j %s: %s %j", (contentType, method, protocol, wire) => {
    const found = detectProtocol(contentType, method);
    expect(found.protocol).toBe(protocol);
    expect(
      found.wire === undefined
        ? undefined
        : [found.wire.binary, found.wire.text, found.wire.stream],
    ).toEqual(wire);
    if (found.wire !== undefined) expect(found.wire.protocol).toBe(protocol);
    // Without a method: the content type alone.
    expect(detectProtocol(contentType).protocol).toBe(protocol);
  });

  it("answers with shared constants (no object per request)", () => {
    expect(detectProtocol("application/grpc", "POST")).toBe(
      detectProtocol("application/grpc+proto"),
    );
    expect(Object.isFrozen(detectProtocol("application/json").wire)).toBe(true);
  });
});
