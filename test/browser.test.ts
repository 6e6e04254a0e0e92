// Web pages that try to reach the device through a visitor's browser. No CORS header is ever sent,
// so a cross-origin page cannot read an answer nor send the key headers (their preflight fails);
// DNS rebinding, which makes the page same-origin, is met by the Host allow-list (--allowed-hosts).

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { killServers, startCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, ensureBuilt, ok, startServer, tempDir, type Answer } from "./helpers.ts";
import { expectFailure, rawOnce, type RawAnswer } from "./raw-client.ts";

beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});
afterAll(closeAgents);

const EVIL = "http://evil.example";
const NAME = ok("eNetMini1");

/** Header names of an answer that belong to CORS. */
const corsHeaders = (a: Answer | RawAnswer): string[] => Object.keys(a.headers).filter((h) => h.toLowerCase().startsWith("access-control-"));

describe("CORS: never a header, so every cross-origin read and preflight fails in the browser", () => {
  it("a preflight for the key headers is refused (405) without any Access-Control-* header", async () => {
    const ts = await startServer();
    const preflight = { Origin: EVIL, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "apirdkey,apiwrkey" };
    for (const [path, allow] of [["/api/v1/properties", "GET, HEAD, PUT"], ["/api/v1/device", "GET, HEAD"]] as const) {
      const a = await call(ts, "OPTIONS", path, { headers: preflight });
      expectFailure(a, 5);
      expect(a.headers["allow"]).toBe(allow);
      expect(corsHeaders(a)).toEqual([]);
    }
    const unknown = await call(ts, "OPTIONS", "/api/v2/properties", { headers: preflight });
    expectFailure(unknown, 2);
    expect(corsHeaders(unknown)).toEqual([]);
    // The homepage: 405 too, and no CORS header either.
    const page = await call(ts, "OPTIONS", "/", { headers: preflight });
    expect({ status: page.status, allow: page.headers["allow"], cors: corsHeaders(page) }).toEqual({ status: 405, allow: "GET, HEAD", cors: [] });
  });

  it("answers to requests with an Origin carry no CORS header, whether served or refused", async () => {
    const ts = await startServer();
    const origin = { headers: { Origin: EVIL } };
    const answers = [
      await call(ts, "GET", "/api/v1/device/0/address", origin),
      await call(ts, "GET", "/api/v1/properties/name", { ...origin, rd: "rdKey1" }),
      await call(ts, "GET", "/api/v1/properties/name", origin),
      await call(ts, "HEAD", "/api/v1/device", origin),
      await call(ts, "GET", "/api/v1/nope", origin),
      await call(ts, "GET", "/api/v1/device", { headers: { Origin: "null" } }),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 401, 200, 404, 200]);
    for (const a of answers) expect(corsHeaders(a)).toEqual([]);
  });

  it("what a page may send without a preflight (a form POST, a GET without key headers) changes or reveals nothing", async () => {
    const ts = await startServer();
    const form = await call(ts, "POST", "/api/v1/properties", { body: "name=pwned", headers: { Origin: EVIL } });
    expectFailure(form, 5);
    const plain = await call(ts, "POST", "/api/v1/properties/name", { body: "name=pwned", contentType: "text/plain", headers: { Origin: EVIL } });
    expectFailure(plain, 5);
    expectFailure(await call(ts, "GET", "/api/v1/apikeys", { headers: { Origin: EVIL } }), 3);
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(NAME);
  });
});

describe("the Host allow-list (DNS rebinding)", () => {
  const ALLOWED = ["device.test:8080", "192.168.15.100"];
  const get = (host: string | undefined, path = "/api/v1/device/0/address", extra = ""): string =>
    `GET ${path} HTTP/1.1\r\n${host === undefined ? "" : `Host: ${host}\r\n`}${extra}\r\n`;

  it("serves the listed values, compared without case, host and port exactly", async () => {
    const ts = await startServer({ server: { allowedHosts: ALLOWED } });
    for (const host of ["device.test:8080", "DEVICE.Test:8080", "192.168.15.100"]) {
      expect((await rawOnce(ts.port, get(host))).text, host).toBe(ok("004082ABCDEF"));
    }
  });

  it.each([
    ["another name", "evil.example"],
    ["the name without its port", "device.test"],
    ["another port", "device.test:8081"],
    ["the default port spelled out", "192.168.15.100:80"],
    ["a trailing dot", "device.test.:8080"],
    ["the loopback address it listens on", "127.0.0.1"],
    ["an empty Host", ""],
  ])("refuses %s (9), even for the open endpoint", async (_what, host) => {
    const ts = await startServer({ server: { allowedHosts: ALLOWED } });
    expectFailure(await rawOnce(ts.port, get(host)), 9);
  });

  it("refuses a request without Host (HTTP/1.0) and one with two Host lines, whichever is listed", async () => {
    const ts = await startServer({ server: { allowedHosts: ALLOWED } });
    expectFailure(await rawOnce(ts.port, "GET /api/v1/device HTTP/1.0\r\n\r\n"), 9);
    expectFailure(await rawOnce(ts.port, get("device.test:8080", "/api/v1/device", "Host: evil.example\r\n")), 9);
    expectFailure(await rawOnce(ts.port, get("evil.example", "/api/v1/device", "Host: device.test:8080\r\n")), 9);
  });

  it("refuses before anything else: keys are not checked (nor counted), writes not made, paths not told apart", async () => {
    const ts = await startServer({ server: { allowedHosts: ALLOWED, throttle: { ...DEFAULT_THROTTLE, maxFailures: 1 } } });
    const evil = "evil.example";
    expectFailure(await rawOnce(ts.port, get(evil, "/api/v1/properties/name", "ApiRdKey: guess\r\n")), 9);
    expectFailure(await rawOnce(ts.port, get(evil, "/api/v1/properties/name", "ApiRdKey: rdKey1\r\n")), 9);
    expectFailure(await rawOnce(ts.port, get(evil, "/nothing/here")), 9);
    const put = "PUT /api/v1/properties/name HTTP/1.1\r\nHost: evil.example\r\nApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\nContent-Length: 10\r\n\r\nname=pwned";
    expectFailure(await rawOnce(ts.port, put), 9);
    // With one wrong key allowed, the guess above did not count; the name did not change.
    expect((await rawOnce(ts.port, get("device.test:8080", "/api/v1/properties/name", "ApiRdKey: rdKey1\r\n"))).text).toBe(NAME);
  });

  it("--allowed-hosts sets the list of the built server", async () => {
    const server = await startCli(["--state-dir", await tempDir(), "--allowed-hosts", "device.test, Other.Test:1234"]);
    expect((await rawOnce(server.port, get("device.test"))).text).toBe(ok("004082ABCDEF"));
    expect((await rawOnce(server.port, get("other.test:1234"))).text).toBe(ok("004082ABCDEF"));
    expectFailure(await rawOnce(server.port, get(`127.0.0.1:${server.port}`)), 9);
    expect(await server.stop()).toBe(0);
  });
});
