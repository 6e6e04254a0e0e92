import { afterAll, afterEach, describe, expect, it } from "vitest";
import { call, cleanup, closeAgents, ok, startServer } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

describe("smoke", () => {
  it("reads the docs/api.md §2 example byte for byte", async () => {
    const ts = await startServer();
    const a = await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" });
    expect(a.status).toBe(200);
    expect(a.text).toBe(ok("eNetMini1"));
    expect(a.headers["content-type"]).toBe("application/json");
    expect(a.headers["content-length"]).toBe(String(Buffer.byteLength(a.text)));
  });
});
