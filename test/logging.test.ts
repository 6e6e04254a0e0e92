// The log: events always; with --log-requests, also one line per answered request (time, client, method, path without the query, status,
// duration, the pair that let it in), text for a terminal or one JSON object per line; key changes
// and refused keys as audit events. Never a key, a query string or a body.

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { fingerprint } from "../src/access/keys.ts";
import { createLogger, type LogFormat } from "../src/common/log.ts";
import { killServers, startCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, ensureBuilt, startServer, tempDir } from "./helpers.ts";

beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});
afterAll(closeAgents);

/** The fingerprint secret of these servers: fixed, so that the test can compute the fingerprints. */
const SECRETS = ["rdKey1", "wrKey1", "rdKey2", "wrKey2", "wrongKey", "s3cret-Rd", "token=abc", "pass_rw"];

/** A server whose log lines land in an array. */
async function loggedServer(format: LogFormat): Promise<{ ts: Awaited<ReturnType<typeof startServer>>; lines: string[] }> {
  const lines: string[] = [];
  const ts = await startServer({ server: { log: createLogger(format, (line) => lines.push(line), { requests: true }) } });
  return { ts, lines };
}

/** The requests every format test sends: a read with a query, a refusal, a key change, an open read, a 404. */
async function traffic(ts: { origin: string }): Promise<void> {
  await call(ts, "GET", "/api/v1/properties/name?token=abc", { rd: "rdKey1" });
  await call(ts, "GET", "/api/v1/properties", { rd: "wrongKey" });
  await call(ts, "PUT", "/api/v1/apikeys/keys/0", { rd: "rdKey2", wr: "wrKey2", body: "rd=s3cret-Rd" });
  await call(ts, "HEAD", "/api/v1/device");
  await call(ts, "PUT", "/api/v1/httprw/pass", { rd: "rdKey4", wr: "wrKey4", body: "pass=pass_rw" });
  await call(ts, "GET", "/api/v2/nothing");
}

describe("request and audit lines", () => {
  it("json: one object per line, with exactly the fields of a request", async () => {
    const { ts, lines } = await loggedServer("json");
    await traffic(ts);
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const requests = entries.filter((e) => e["msg"] === "request");
    expect(requests.map((r) => [r["method"], r["path"], r["status"], r["pair"], r["client"]])).toEqual([
      ["GET", "/api/v1/properties/name", 200, "properties", "127.0.0.1"],
      ["GET", "/api/v1/properties", 401, "-", "127.0.0.1"],
      ["PUT", "/api/v1/apikeys/keys/0", 200, "apikeys", "127.0.0.1"],
      ["HEAD", "/api/v1/device", 200, "-", "127.0.0.1"],
      ["PUT", "/api/v1/httprw/pass", 200, "httprw", "127.0.0.1"],
      ["GET", "/api/v2/nothing", 404, "-", "127.0.0.1"],
    ]);
    // A refused request says why, in words (its error's detail), never what was sent.
    expect(requests.map((r) => r["reason"])).toEqual([
      undefined,
      "the ApiRdKey header does not hold this endpoint's read key",
      undefined,
      undefined,
      undefined,
      "the API is under /api/v1/; GET /api/v1/ lists its endpoints",
    ]);
    for (const r of requests) {
      const fields = ["time", "level", "msg", "client", "method", "path", "status", "ms", "pair"];
      expect(Object.keys(r)).toEqual(r["status"] === 200 ? fields : [...fields, "reason"]);
      expect(new Date(r["time"] as string).toISOString()).toBe(r["time"]);
      expect(r["ms"]).toBeGreaterThanOrEqual(0);
    }
    expect(entries.find((e) => e["event"] === "key-refused")).toMatchObject({ level: "warn", client: "127.0.0.1", endpoint: "properties", header: "ApiRdKey" });
    expect(entries.find((e) => e["event"] === "key-changed")).toMatchObject({ level: "info", pair: "properties", side: "rd", fingerprint: fingerprint("s3cret-Rd", ts.device.fingerprintSecret) });
    for (const secret of SECRETS) expect(lines.join("\n")).not.toContain(secret);
  });

  it("text: one readable line per request, columns in a fixed order", async () => {
    const { ts, lines } = await loggedServer("text");
    await traffic(ts);
    const requests = lines.filter((l) => / REQ {3}/.test(l));
    expect(requests).toHaveLength(6);
    for (const line of requests) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z REQ {3}127\.0\.0\.1 [A-Z]+ \/\S+ \d{3} \d+\.\d{3}ms \S+( reason="[^"]+")?$/);
    expect(requests[0]).toMatch(/ GET \/api\/v1\/properties\/name 200 \d+\.\d{3}ms properties$/);
    expect(requests[1]).toMatch(/ GET \/api\/v1\/properties 401 \d+\.\d{3}ms - reason="the ApiRdKey header does not hold this endpoint's read key"$/);
    expect(lines.some((l) => / WARN  refused key event=key-refused client=127\.0\.0\.1 endpoint=properties header=ApiRdKey$/.test(l))).toBe(true);
    for (const secret of SECRETS) expect(lines.join("\n")).not.toContain(secret);
  });

  it("emptying a key at runtime logs the start's open-endpoint warning, naming every open endpoint", async () => {
    const { ts, lines } = await loggedServer("text");
    await call(ts, "PUT", "/api/v1/apikeys/keys/5", { rd: "rdKey2", wr: "wrKey2", body: "rd=" });
    expect(lines.filter((l) => l.includes("open to anyone"))).toEqual([expect.stringMatching(/ WARN  endpoints open to anyone \(an empty key\); acceptable only before provisioning endpoints=process$/)]);
    await call(ts, "PUT", "/api/v1/apikeys/keys/6", { rd: "rdKey2", wr: "wrKey2", body: "wr=" });
    expect(lines.filter((l) => l.includes("open to anyone")).at(-1)).toMatch(/ endpoints=process,data$/);
  });

  it("quotes a path that could break the line, and cuts a very long one", async () => {
    const lines: string[] = [];
    const log = createLogger("text", (l) => lines.push(l), { requests: true });
    log.request?.("127.0.0.1", "GET", '/api/v1/a"b', 404, 0.1234, "-");
    expect(lines[0]).toMatch(/ GET "\/api\/v1\/a\\"b" 404 0\.123ms -$/);
    const { ts, lines: served } = await loggedServer("json");
    await call(ts, "GET", `/api/v1/properties/${"x".repeat(400)}`, { rd: "rdKey1" });
    expect(JSON.parse(served.at(-1) as string)).toMatchObject({ path: `/api/v1/properties/${"x".repeat(256 - 19)}...`, status: 200 });
  });

  it("the bundle with --log-format json --log-requests writes nothing but JSON lines to stderr", async () => {
    const server = await startCli(["--state-dir", await tempDir(), "--log-format", "json", "--log-requests"]);
    await traffic(server);
    expect(await server.stop()).toBe(0);
    const lines = server.log().trimEnd().split("\n");
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.filter((e) => e["msg"] === "request")).toHaveLength(6);
    expect(entries.map((e) => e["msg"])).toContain("listening");
    expect(entries.at(-1)).toMatchObject({ level: "info", msg: "stopped" });
    for (const secret of SECRETS) expect(server.log()).not.toContain(secret);
  });
});

describe("request lines are opt-in", () => {
  it("by default the bundle logs events (start, refused key, key change, stop) but no request line", async () => {
    const server = await startCli(["--state-dir", await tempDir(), "--log-format", "json"]);
    await traffic(server);
    expect(await server.stop()).toBe(0);
    const entries = server.log().trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.filter((e) => e["msg"] === "request")).toEqual([]);
    const events = entries.map((e) => e["event"] ?? e["msg"]);
    for (const event of ["listening", "key-refused", "key-changed", "stopping", "stopped"]) expect(events).toContain(event);
  });

  it.each([
    ["1", 6],
    ["true", 6],
    ["0", 0],
    ["", 0],
  ])("APIKEYD_LOG_REQUESTS=%j gives %i request lines", async (value, count) => {
    const server = await startCli(["--state-dir", await tempDir()], { APIKEYD_LOG_REQUESTS: value });
    await traffic(server);
    expect(await server.stop()).toBe(0);
    expect(server.log().split("\n").filter((l) => / REQ {3}/.test(l))).toHaveLength(count);
  });

  it("a block by the throttle is an event, once, with its length; the 429s after it are not", async () => {
    const lines: string[] = [];
    const ts = await startServer({ server: { log: createLogger("json", (line) => lines.push(line)), throttle: { maxFailures: 3, windowMs: 60_000, blockMs: 30_000, maxBlockMs: 900_000, offenceMemoryMs: 3_600_000, maxAddresses: 100 }, clock: () => 1_000_000 } });
    for (let i = 0; i < 3; i++) expect((await call(ts, "GET", "/api/v1/properties", { rd: "wrongKey" })).status).toBe(401);
    expect((await call(ts, "GET", "/api/v1/properties", { rd: "rdKey1" })).status).toBe(429);
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.filter((e) => e["event"] === "key-refused")).toHaveLength(3);
    expect(entries.filter((e) => e["event"] === "throttle-block")).toEqual([expect.objectContaining({ level: "warn", client: "127.0.0.1", seconds: 30 })]);
    expect(entries.filter((e) => e["msg"] === "request")).toEqual([]);
  });

  it("a library logger without the option has no request method, so the pipeline builds no line", () => {
    expect(createLogger("text", () => undefined).request).toBeUndefined();
    expect(createLogger("json", () => undefined, { requests: true }).request).toBeTypeOf("function");
  });

  it("refuses a variable that is neither on nor off, without quoting it", async () => {
    const { parseOptions } = await import("../src/cli/options.ts");
    expect(parseOptions([], { APIKEYD_LOG_REQUESTS: "1" }).logRequests).toBe(true);
    expect(parseOptions(["--log-requests"], { APIKEYD_LOG_REQUESTS: "0" }).logRequests).toBe(true);
    expect(parseOptions([], {}).logRequests).toBe(false);
    expect(() => parseOptions([], { APIKEYD_LOG_REQUESTS: "s3cret" })).toThrow(/^APIKEYD_LOG_REQUESTS takes 1, true, yes, on, or 0, false, no, off$/);
  });
});
