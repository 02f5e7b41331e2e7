import { jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { mintToken, parseTtl } from "./token-command.js";

describe("token", () => {
  it("mints an HS256 token with sub, rooms and an expiry the server's secret verifies", async () => {
    const token = await mintToken({ secret: "s3cret", sub: "alice", rooms: ["team-*"], ttlS: 60 });
    const { payload, protectedHeader } = await jwtVerify(token, new TextEncoder().encode("s3cret"));
    expect(protectedHeader.alg).toBe("HS256");
    expect(payload).toMatchObject({ sub: "alice", rooms: ["team-*"] });
    expect((payload.exp as number) - (payload.iat as number)).toBe(60);
    await expect(jwtVerify(token, new TextEncoder().encode("other"))).rejects.toThrow();
  });

  it("puts a roles claim in the token only when roles are given", async () => {
    const secret = new TextEncoder().encode("s3cret");
    const admin = await mintToken({ secret: "s3cret", sub: "op", roles: ["admin"], ttlS: 60 });
    expect((await jwtVerify(admin, secret)).payload).toMatchObject({ sub: "op", roles: ["admin"] });
    const plain = await mintToken({ secret: "s3cret", sub: "op", ttlS: 60 });
    expect((await jwtVerify(plain, secret)).payload).not.toHaveProperty("roles");
  });

  it("reads lifetimes in seconds, minutes, hours and days", () => {
    expect([parseTtl("90"), parseTtl("30m"), parseTtl("12h"), parseTtl("7d")]).toEqual([
      90, 1800, 43_200, 604_800,
    ]);
    expect(() => parseTtl("soon")).toThrow(/seconds/);
  });
});
