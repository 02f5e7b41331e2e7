import { createContextKey, createContextValues } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { CallValues } from "./rpc-context.js";

describe("CallValues", () => {
  it("reads, writes and deletes as connect-es's createContextValues does", () => {
    const key = createContextKey<string>("default", { description: "k" });
    const other = createContextKey<number | undefined>(undefined);
    for (const values of [new CallValues(), createContextValues()]) {
      expect(values.get(key)).toBe("default");
      expect(values.set(key, "set").get(key)).toBe("set");
      expect(values.set(other, undefined).get(other)).toBeUndefined();
      expect(values.delete(key).get(key)).toBe("default");
    }
    // No function of its own: get, set and delete are shared by every call.
    const a = new CallValues();
    const b = new CallValues();
    expect(a.get).toBe(b.get);
    expect(Object.keys(a)).toEqual([]);
  });
});
