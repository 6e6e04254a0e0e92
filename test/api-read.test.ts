// Reading (docs/api.md §2): whole documents, sub-paths, percent-decoding, the envelope byte for byte, HEAD.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, cleanup, CONFIG_DIR, closeAgents, ok, startServer, type TestServer } from "./helpers.ts";

const READ_KEYS: Record<string, string | undefined> = {
  device: undefined,
  properties: "rdKey1",
  apikeys: "rdKey2",
  httpro: "rdKey3",
  httprw: "rdKey4",
  httpsu: "rdKey5",
  process: "rdKey6",
  data: "rdKey7",
};

// Reads change nothing (but the pairs' last use, in memory), so one server serves the whole file.
// Its clock stands still, so that a pair's lastUsed is known.
const NOW_S = 1_750_000_000;
let ts: TestServer;
beforeAll(async () => {
  ts = await startServer({ server: { clock: () => NOW_S * 1000 } });
});
afterAll(async () => {
  await cleanup();
  await closeAgents();
});

const get = (path: string, rd?: string) => call(ts, "GET", path, rd === undefined ? {} : { rd });

describe("whole documents", () => {
  it.each(Object.keys(READ_KEYS))("GET /api/v1/%s answers the factory document", async (endpoint) => {
    const factory = JSON.parse(await readFile(join(CONFIG_DIR, `${endpoint}.json`), "utf8")) as { keys?: Array<Record<string, unknown>> };
    const a = await get(`/api/v1/${endpoint}`, READ_KEYS[endpoint]);
    // The pairs' last use is live (docs/api.md §8): the apikeys pair let this very read in; other
    // pairs show the reads of the other tests, or 0.
    if (endpoint === "apikeys") (a.json?.data as { keys: Array<Record<string, unknown>> }).keys.forEach((pair, i) => {
      if (i === 1 || pair["lastUsed"] !== 0) expect([pair["lastUsed"], pair["lastUsedFrom"]]).toEqual([NOW_S, "127.0.0.1"]);
      Object.assign(factory.keys?.[i] ?? {}, { lastUsed: pair["lastUsed"], lastUsedFrom: pair["lastUsedFrom"] });
    });
    expect(a.status).toBe(200);
    expect(a.text).toBe(ok(factory));
    expect(a.headers["content-type"]).toBe("application/json");
    expect(a.headers["content-length"]).toBe(String(Buffer.byteLength(a.text)));
  });

  it("forgives one trailing slash", async () => {
    expect((await get("/api/v1/properties/", "rdKey1")).text).toBe((await get("/api/v1/properties", "rdKey1")).text);
    expect((await get("/api/v1/properties/name/", "rdKey1")).text).toBe(ok("eNetMini1"));
  });

  it("ignores a query string", async () => {
    expect((await get("/api/v1/properties/name?pretty=1", "rdKey1")).text).toBe(ok("eNetMini1"));
  });
});

describe("sub-paths (docs/api.md §2's examples)", () => {
  it("curl -H 'ApiRdKey: rdKey1' /api/v1/properties/name", async () => {
    const a = await get("/api/v1/properties/name", "rdKey1");
    expect(a.status).toBe(200);
    expect(a.text).toBe('{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":"eNetMini1"}');
  });

  it("/api/v1/process/entries/0", async () => {
    expect((await get("/api/v1/process/entries/0", "rdKey6")).text).toBe(
      '{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":{"name":"AIN","pin":"-0-","unit":"mA","shift":3,"hysteresis":0,' +
        '"format":"0:24","Json+typeName":"MkcJsonLib.jProcessAi","Json+typeRevision":1}}',
    );
  });

  it("/api/v1/device/0/board/pcb/name, with no key", async () => {
    expect((await get("/api/v1/device/0/board/pcb/name")).text).toBe(ok("mkc1601"));
  });

  it("/api/v1/data/Json%2BtypeName, and a raw + taken as +", async () => {
    expect((await get("/api/v1/data/Json%2BtypeName", "rdKey7")).text).toBe(ok("MkcJsonLib.jData"));
    expect((await get("/api/v1/data/Json+typeName", "rdKey7")).text).toBe(ok("MkcJsonLib.jData"));
    expect((await get("/api/v1/data/Json%2btypeRevision", "rdKey7")).text).toBe(ok(0));
  });

  it("percent-encoded member and endpoint names", async () => {
    expect((await get("/api/v1/properties/%6Eame", "rdKey1")).text).toBe(ok("eNetMini1"));
    expect((await get("/api/v1/%70roperties/name", "rdKey1")).text).toBe(ok("eNetMini1"));
  });

  it("deep paths through arrays and objects", async () => {
    expect((await get("/api/v1/properties/networkInterfaces/0/hostEntries/0/address", "rdKey1")).text).toBe(ok("192.168.15.100"));
    expect((await get("/api/v1/apikeys/keys/6/name", "rdKey2")).text).toBe(ok("data"));
    expect((await get("/api/v1/process/entries/3/pin", "rdKey6")).text).toBe(ok("XB.6"));
  });

  it("serves every kind of value byte for byte; numbers are plain JSON numbers", async () => {
    expect((await get("/api/v1/data/entries/0/pin", "rdKey7")).text).toBe('{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":347}');
    expect((await get("/api/v1/data/entries/1/pin", "rdKey7")).text).toBe('{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":0.004}');
    expect((await get("/api/v1/data/entries/2/pin", "rdKey7")).text).toBe('{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":true}');
    expect((await get("/api/v1/properties/mqtt/port", "rdKey1")).text).toBe('{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":1883}');
    expect((await get("/api/v1/properties/sntpEntries", "rdKey1")).text).toBe(
      '{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":[{"address":"192.168.15.90","enable":false,' +
        '"Json+typeName":"MkcJsonLib.jSntpEntry","Json+typeRevision":0}]}',
    );
  });

  it("a repeated read answers the same bytes", async () => {
    const first = await get("/api/v1/process", "rdKey6");
    expect((await get("/api/v1/process", "rdKey6")).text).toBe(first.text);
  });
});

describe("HEAD", () => {
  it.each([
    ["/api/v1/properties", "rdKey1", 200],
    ["/api/v1/device/0/address", undefined, 200],
    ["/api/v1/properties/nope", "rdKey1", 200],
    ["/api/v1/properties", "wrong", 401],
    ["/api/v1/nope", undefined, 404],
  ] as const)("HEAD %s answers GET's status and headers without a body", async (path, rd, status) => {
    const opts = rd === undefined ? {} : { rd };
    const g = await call(ts, "GET", path, opts);
    const h = await call(ts, "HEAD", path, opts);
    expect(h.status).toBe(status);
    expect(g.status).toBe(status);
    expect(h.text).toBe("");
    for (const header of ["content-type", "content-length", "cache-control", "allow", "retry-after"]) {
      expect([header, h.headers[header]]).toEqual([header, g.headers[header]]);
    }
    expect(Number(h.headers["content-length"])).toBe(Buffer.byteLength(g.text));
  });
});
