// Writing (docs/api.md §4): every writable member of every type accepts and converts a valid value, every
// other member is read-only, leaf PUTs, JSON bodies, all-or-nothing, and the `data` outputs.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { call, cleanup, closeAgents, CONFIG_DIR, failure, ok, startServer, type TestServer, withoutDetail } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

const PAIR_INDEX: Record<string, number> = { properties: 1, apikeys: 2, httpro: 3, httprw: 4, httpsu: 5, process: 6, data: 7 };

/** The factory read and write keys of the endpoint a path names. */
function keysFor(path: string): { rd: string; wr: string } {
  const n = PAIR_INDEX[path.split("/")[3] ?? ""] ?? 0;
  return { rd: `rdKey${n}`, wr: `wrKey${n}` };
}

const put = (ts: TestServer, path: string, body: string | Record<string, unknown>) => call(ts, "PUT", path, { ...keysFor(path), body });
const get = (ts: TestServer, path: string) => call(ts, "GET", path, { rd: keysFor(path).rd });
const dataOf = async (ts: TestServer, path: string): Promise<Record<string, unknown>> => (await get(ts, path)).json?.data as Record<string, unknown>;

/** [type, path to an object of that type, member, form text, the value it converts to]. */
const WRITABLE: ReadonlyArray<readonly [string, string, string, string, unknown]> = [
  ["MkcJsonLib.jProperties", "/api/v1/properties", "name", "test", "test"],
  ["MkcJsonLib.jNetworkInterface", "/api/v1/properties/networkInterfaces/0", "domain", "plant.example", "plant.example"],
  ["MkcJsonLib.jHostEntry", "/api/v1/properties/networkInterfaces/0/hostEntries/0", "dhcp", "1", true],
  ["MkcJsonLib.jHostEntry", "/api/v1/properties/networkInterfaces/0/hostEntries/0", "address", "192.168.15.101", "192.168.15.101"],
  ["MkcJsonLib.jHostEntry", "/api/v1/properties/networkInterfaces/0/hostEntries/0", "mask", "255.255.0.0", "255.255.0.0"],
  ["MkcJsonLib.jHostEntry", "/api/v1/properties/networkInterfaces/0/hostEntries/0", "gateway", "192.168.15.1", "192.168.15.1"],
  ["MkcJsonLib.jHostEntry", "/api/v1/properties/networkInterfaces/0/hostEntries/0", "dns", "9.9.9.9", "9.9.9.9"],
  ["MkcJsonLib.jSntpEntry", "/api/v1/properties/sntpEntries/0", "address", "10.0.0.1", "10.0.0.1"],
  ["MkcJsonLib.jSntpEntry", "/api/v1/properties/sntpEntries/0", "enable", "true", true],
  ["MkcJsonLib.jMqttEntry", "/api/v1/properties/mqtt", "root", "plant/line2", "plant/line2"],
  ["MkcJsonLib.jMqttEntry", "/api/v1/properties/mqtt", "enable", "1", true],
  ["MkcJsonLib.jMqttEntry", "/api/v1/properties/mqtt", "address", "10.0.0.2", "10.0.0.2"],
  ["MkcJsonLib.jMqttEntry", "/api/v1/properties/mqtt", "port", "1884", 1884],
  ["MkcJsonLib.jMqttEntry", "/api/v1/properties/mqtt", "keepalive", "30", 30],
  ["MkcJsonLib.jMqttEntry", "/api/v1/properties/mqtt", "user", "broker user", "broker user"],
  ["MkcJsonLib.jMqttEntry", "/api/v1/properties/mqtt", "pass", "p&ss=w+rd", "p&ss=w+rd"],
  ["MkcJsonLib.jProcess", "/api/v1/process", "name", "line 2", "line 2"],
  ["MkcJsonLib.jProcessAi", "/api/v1/process/entries/0", "name", "AIN1", "AIN1"],
  ["MkcJsonLib.jProcessAi", "/api/v1/process/entries/0", "unit", "V", "V"],
  ["MkcJsonLib.jProcessAi", "/api/v1/process/entries/0", "shift", "31", 31],
  ["MkcJsonLib.jProcessAi", "/api/v1/process/entries/0", "hysteresis", "2", 2],
  ["MkcJsonLib.jProcessAi", "/api/v1/process/entries/0", "format", "0:10", "0:10"],
  ["MkcJsonLib.jProcessAo", "/api/v1/process/entries/1", "name", "LED", "LED"],
  ["MkcJsonLib.jProcessAo", "/api/v1/process/entries/1", "unit", "‰", "‰"],
  ["MkcJsonLib.jProcessAo", "/api/v1/process/entries/1", "format", "0:1000", "0:1000"],
  ["MkcJsonLib.jProcessDo", "/api/v1/process/entries/2", "name", "PUMP", "PUMP"],
  ["MkcJsonLib.jProcessDo", "/api/v1/process/entries/2", "pulse", "0", 0],
  ["MkcJsonLib.jProcessDo", "/api/v1/process/entries/2", "save", "0", false],
  ["MkcJsonLib.jProcessDi", "/api/v1/process/entries/3", "name", "DOOR", "DOOR"],
  ["MkcJsonLib.jProcessDi", "/api/v1/process/entries/3", "shift", "0", 0],
  ["MkcJsonLib.jDataAo", "/api/v1/data/entries/1", "pin", "-1.25e2", -125],
  ["MkcJsonLib.jDataDo", "/api/v1/data/entries/2", "pin", "false", false],
  ["MkcJsonLib.jUser", "/api/v1/httpro", "name", "viewer", "viewer"],
  ["MkcJsonLib.jUser", "/api/v1/httprw", "pass", "s3cret!", "s3cret!"],
  ["MkcJsonLib.jUser", "/api/v1/httpsu", "name", "root", "root"],
  ["MkcJsonLib.jUser", "/api/v1/httpsu", "pass", "pw", "pw"],
  ["MkcJsonLib.jApiKey", "/api/v1/apikeys/keys/6", "rd", "mykey", "mykey"],
  ["MkcJsonLib.jApiKey", "/api/v1/apikeys/keys/5", "wr", "a+b&c=d", "a+b&c=d"],
  ["MkcJsonLib.jApiKey", "/api/v1/apikeys/keys/6", "label", "line 3 PLC", "line 3 PLC"],
  ["MkcJsonLib.jApiKey", "/api/v1/apikeys/keys/6", "enabled", "0", false],
  ["MkcJsonLib.jApiKey", "/api/v1/apikeys/keys/6", "expires", "2031-12-31 23:59:59", "2031-12-31 23:59:59"],
  ["MkcJsonLib.jApiKey", "/api/v1/apikeys/keys/6", "origins", "10.0.0.0/8, fd00::/8", "10.0.0.0/8, fd00::/8"],
];

describe("the writable members of every type (device-config/schema/mkc.json)", () => {
  it("the table covers every writable member the schema declares", async () => {
    const schema = JSON.parse(await readFile(join(CONFIG_DIR, "schema", "mkc.json"), "utf8")) as { types: Record<string, { writable: object }> };
    const declared = Object.entries(schema.types).flatMap(([type, rule]) => Object.keys(rule.writable).map((m) => `${type}.${m}`));
    // jApiKeys.sealed is one-way (docs/api.md §9): test/sealed.test.ts writes it, and refuses it back.
    expect(new Set([...WRITABLE.map(([type, , member]) => `${type}.${member}`), "MkcJsonLib.jApiKeys.sealed"])).toEqual(new Set(declared));
  });

  it.each(WRITABLE)("%s: %s takes %s=%j from a form, converted, and back as native JSON", async (type, path, member, text, value) => {
    const ts = await startServer();
    const before = await dataOf(ts, path);
    expect(before["Json+typeName"]).toBe(type);
    expect(before[member]).not.toEqual(value); // the write must be visible
    const a = await put(ts, path, `${encodeURIComponent(member)}=${encodeURIComponent(text)}`);
    expect(a.status).toBe(200);
    expect(a.json?.meta).toEqual({ error: 0, message: "JSON_ERROR_NONE" });
    const expected = { ...before, [member]: value };
    if (type.startsWith("MkcJsonLib.jData")) expected["time"] = (a.json?.data as Record<string, unknown>)["time"];
    // A change of a key stamps the pair's `changed` (docs/api.md §8).
    if (member === "rd" || member === "wr") expected["changed"] = Math.floor(Date.now() / 1000);
    expect(a.text).toBe(ok(expected));
    expect((await get(ts, `${path}/${member}`)).text).toBe(ok(value));
    expect(await dataOf(ts, path)).toEqual(expected);

    // The factory value again, this time in a JSON body of the member's own JSON type.
    const back = await put(ts, path, { [member]: before[member] });
    expect(back.status).toBe(200);
    expect((back.json?.data as Record<string, unknown>)[member]).toEqual(before[member]);
    expect((await get(ts, `${path}/${member}`)).text).toBe(ok(before[member]));
  });
});

describe("every other member is read-only (6)", () => {
  it("refuses each one, as a member of its object and as a leaf, and changes nothing", async () => {
    // A clock that stands still: the reads before and after show the same last use of the apikeys pair.
    const ts = await startServer({ server: { clock: () => 1_750_000_000_000 } });
    const schema = JSON.parse(await readFile(join(CONFIG_DIR, "schema", "mkc.json"), "utf8")) as { types: Record<string, { writable: object }> };
    const endpoints = ["properties", "apikeys", "httpro", "httprw", "httpsu", "process", "data"];
    const before = new Map<string, string>();
    for (const e of endpoints) before.set(e, (await get(ts, `/api/v1/${e}`)).text);
    const refused: string[] = [];
    const visit = async (value: unknown, path: string): Promise<void> => {
      if (Array.isArray(value)) {
        for (const [i, item] of value.entries()) await visit(item, `${path}/${i}`);
        return;
      }
      if (typeof value !== "object" || value === null) return;
      const record = value as Record<string, unknown>;
      const writable = Object.keys(schema.types[record["Json+typeName"] as string]?.writable ?? {});
      for (const [member, child] of Object.entries(record)) {
        if (!writable.includes(member)) {
          const name = encodeURIComponent(member);
          const a = await put(ts, path, `${name}=x`);
          expect([`${path} ${member}`, withoutDetail(a.text)]).toEqual([`${path} ${member}`, failure(6, "JSON_ERROR_READ_ONLY")]);
          if (typeof child !== "object" || child === null) {
            const leaf = await put(ts, `${path}/${name}`, `${name}=x`);
            expect([`${path}/${member}`, withoutDetail(leaf.text)]).toEqual([`${path}/${member}`, failure(6, "JSON_ERROR_READ_ONLY")]);
          }
          refused.push(`${path}/${member}`);
        }
        await visit(child, `${path}/${encodeURIComponent(member)}`);
      }
    };
    for (const e of endpoints) await visit(JSON.parse(before.get(e) as string).data, `/api/v1/${e}`);
    // docs/api.md §4's read-only list: names of key pairs, process pins, input values, type tags.
    expect(refused).toEqual(
      expect.arrayContaining([
        "/api/v1/apikeys/keys/0/name",
        "/api/v1/process/entries/2/pin",
        "/api/v1/data/entries/0/pin",
        "/api/v1/data/entries/3/pin",
        "/api/v1/properties/networkInterfaces/0/address",
        "/api/v1/properties/Json+typeName",
        "/api/v1/httpro/Json+typeRevision",
      ]),
    );
    // Every pair was used by the refused PUTs (their keys were right): only its last use moved.
    const unused = (text: string | undefined): string | undefined => text?.replace(/"lastUsed":\d+,"lastUsedFrom":"[^"]*"/g, '"lastUsed":-');
    for (const e of endpoints) expect(unused((await get(ts, `/api/v1/${e}`)).text)).toBe(unused(before.get(e)));
  });
});

describe("docs/api.md §4's curl examples", () => {
  it('-d "rd=mykey" /api/v1/apikeys/keys/6', async () => {
    const ts = await startServer();
    const a = await call(ts, "PUT", "/api/v1/apikeys/keys/6", { rd: "rdKey2", wr: "wrKey2", body: "rd=mykey" });
    const changed = Math.floor(Date.now() / 1000);
    const life = { label: "", enabled: true, expires: "", origins: "", changed, lastUsed: 0, lastUsedFrom: "", graceUntil: 0, confirmUntil: 0 };
    expect(a.text).toBe(ok({ name: "data", rd: "mykey", wr: "wrKey7", ...life, "Json+typeName": "MkcJsonLib.jApiKey", "Json+typeRevision": 1 }));
    expect((await call(ts, "GET", "/api/v1/data/time", { rd: "mykey" })).status).toBe(200);
  });

  it('-d "name=test" /api/v1/properties', async () => {
    const ts = await startServer();
    const a = await call(ts, "PUT", "/api/v1/properties", { rd: "rdKey1", wr: "wrKey1", body: "name=test" });
    expect(a.status).toBe(200);
    expect((a.json?.data as Record<string, unknown>)["name"]).toBe("test");
    expect(a.json?.data).toEqual({ ...(JSON.parse(await readFile(join(CONFIG_DIR, "properties.json"), "utf8")) as object), name: "test" });
  });

  it('-d "address=192.168.15.101&mask=255.255.0.0" .../hostEntries/0', async () => {
    const ts = await startServer();
    const a = await call(ts, "PUT", "/api/v1/properties/networkInterfaces/0/hostEntries/0", {
      rd: "rdKey1",
      wr: "wrKey1",
      body: "address=192.168.15.101&mask=255.255.0.0",
    });
    expect(a.text).toBe(
      ok({ dhcp: false, address: "192.168.15.101", mask: "255.255.0.0", gateway: "0.0.0.0", dns: "0.0.0.0", "Json+typeName": "MkcJsonLib.jHostEntry", "Json+typeRevision": 0 }),
    );
  });
});

describe("leaf PUTs", () => {
  it("PUT /api/v1/properties/name with name=test answers the leaf", async () => {
    const ts = await startServer();
    expect((await put(ts, "/api/v1/properties/name", "name=test")).text).toBe('{"meta":{"error":0,"message":"JSON_ERROR_NONE"},"data":"test"}');
    expect((await get(ts, "/api/v1/properties")).json?.data).toMatchObject({ name: "test" });
  });

  it("converts like a member write, from a form or JSON", async () => {
    const ts = await startServer();
    expect((await put(ts, "/api/v1/properties/mqtt/port", "port=1884")).text).toBe(ok(1884));
    expect((await put(ts, "/api/v1/properties/mqtt/enable", { enable: true })).text).toBe(ok(true));
    expect((await put(ts, "/api/v1/properties/mqtt/keepalive", "keepalive=0")).text).toBe(ok(0));
    expect(await dataOf(ts, "/api/v1/properties/mqtt")).toMatchObject({ port: 1884, enable: true, keepalive: 0 });
  });

  it("refuses a body that names another member (9) or more than the leaf (9)", async () => {
    const ts = await startServer();
    expect(withoutDetail((await put(ts, "/api/v1/properties/mqtt/port", "keepalive=5")).text)).toBe(failure(9, "JSON_ERROR_BAD_REQUEST"));
    expect(withoutDetail((await put(ts, "/api/v1/properties/mqtt/port", { port: 1884, root: "x" })).text)).toBe(failure(9, "JSON_ERROR_BAD_REQUEST"));
    expect((await get(ts, "/api/v1/properties/mqtt")).json?.data).toMatchObject({ port: 1883, keepalive: 60, root: "mkc" });
  });
});

describe("form decoding and value conversion", () => {
  it("decodes + as a space and %XX as UTF-8 bytes in strings", async () => {
    const ts = await startServer();
    expect((await put(ts, "/api/v1/properties/name", "name=Halle+3%2B4")).text).toBe(ok("Halle 3+4"));
    expect((await put(ts, "/api/v1/properties/name", "name=caf%C3%A9%20%E2%82%AC")).text).toBe(ok("café €"));
    expect((await put(ts, "/api/v1/properties/name", "name=a%26b%3Dc")).text).toBe(ok("a&b=c"));
  });

  it("accepts the bounds: empty and 255-character strings, 128-character and empty keys, ports 1 and 65535", async () => {
    const ts = await startServer();
    expect((await put(ts, "/api/v1/properties/mqtt", "user=")).json?.data).toMatchObject({ user: "" });
    expect((await put(ts, "/api/v1/properties/name", `name=${"n".repeat(255)}`)).text).toBe(ok("n".repeat(255)));
    expect((await put(ts, "/api/v1/properties/mqtt/port", "port=1")).text).toBe(ok(1));
    expect((await put(ts, "/api/v1/properties/mqtt/port", "port=65535")).text).toBe(ok(65535));
    expect((await put(ts, "/api/v1/apikeys/keys/2/rd", `rd=${"k".repeat(128)}`)).text).toBe(ok("k".repeat(128)));
    expect((await put(ts, "/api/v1/apikeys/keys/2/wr", "wr=")).text).toBe(ok(""));
  });

  it("converts booleans from true/false/1/0 and numbers from decimal and exponent text", async () => {
    const ts = await startServer();
    const seen: unknown[] = [];
    for (const text of ["true", "false", "1", "0"]) seen.push((await put(ts, "/api/v1/properties/mqtt/enable", `enable=${text}`)).json?.data);
    expect(seen).toEqual([true, false, true, false]);
    expect((await put(ts, "/api/v1/data/entries/1/pin", "pin=0.25")).json?.data).toBe(0.25);
    expect((await put(ts, "/api/v1/data/entries/1/pin", "pin=-4E-1")).json?.data).toBe(-0.4);
  });

  it("JSON bodies need native JSON types: a port sent as the string \"1883\" is refused (8)", async () => {
    const ts = await startServer();
    expect(withoutDetail((await put(ts, "/api/v1/properties/mqtt", { port: "1884" })).text)).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    expect(withoutDetail((await put(ts, "/api/v1/properties/mqtt", { enable: "true" })).text)).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    const a = await call(ts, "PUT", "/api/v1/properties/mqtt", {
      ...keysFor("/api/v1/properties"),
      body: '{"port": 1884, "enable": true, "root": "x\\u00e9"}',
      contentType: "application/json; charset=utf-8",
    });
    expect(a.json?.data).toMatchObject({ port: 1884, enable: true, root: "xé" });
  });

  it("a boolean in a JSON body may also be 1 or 0 (docs/api.md §4), but not 2 or \"1\"", async () => {
    const ts = await startServer();
    expect((await put(ts, "/api/v1/properties/mqtt", { enable: 1 })).json?.data).toMatchObject({ enable: true });
    expect((await put(ts, "/api/v1/properties/mqtt", { enable: 0 })).json?.data).toMatchObject({ enable: false });
    expect(withoutDetail((await put(ts, "/api/v1/properties/mqtt", { enable: 2 })).text)).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
    expect(withoutDetail((await put(ts, "/api/v1/properties/mqtt", { enable: "1" })).text)).toBe(failure(8, "JSON_ERROR_INVALID_VALUE"));
  });
});

describe("all or nothing", () => {
  it.each([
    ["a form", "root=new&port=1884&address=999.1.1.1", 8],
    ["a form with an unknown member", "root=new&port=1884&nope=1", 7],
    ["a form with a read-only member", "root=new&Json%2BtypeRevision=1", 6],
    ["a JSON body", { root: "new", port: 1884, keepalive: -1 }, 8],
  ] as const)("one bad member in %s changes nothing, in memory or on disk", async (_what, body, code) => {
    const ts = await startServer();
    const file = join(ts.stateDir, "properties.json");
    const onDisk = await readFile(file);
    const before = (await get(ts, "/api/v1/properties")).text;
    const a = await put(ts, "/api/v1/properties/mqtt", body as string | Record<string, unknown>);
    expect(a.json?.meta.error).toBe(code);
    expect((await get(ts, "/api/v1/properties")).text).toBe(before);
    expect(await readFile(file)).toEqual(onDisk);
  });
});

describe("the data endpoint's outputs", () => {
  const NOW_MS = 1_700_000_123_456;
  const NOW = 1_700_000_123;

  it("a PUT of an output's pin sets that entry's time and the document's time to now", async () => {
    const ts = await startServer({ server: { clock: () => NOW_MS } });
    const ao = await put(ts, "/api/v1/data/entries/1", "pin=0.5");
    expect(ao.text).toBe(ok({ pin: 0.5, time: NOW, error: 0, "Json+typeName": "MkcJsonLib.jDataAo", "Json+typeRevision": 0 }));
    const doc = await dataOf(ts, "/api/v1/data");
    expect(doc["time"]).toBe(NOW);
    expect((doc["entries"] as Array<Record<string, unknown>>).map((e) => [e["pin"], e["time"]])).toEqual([
      [347, 0],
      [0.5, NOW],
      [true, 0],
      [false, 0],
    ]);
    expect((await put(ts, "/api/v1/data/entries/2/pin", { pin: false })).text).toBe(ok(false));
    expect(await dataOf(ts, "/api/v1/data/entries/2")).toMatchObject({ pin: false, time: NOW });
  });

  it("inputs are read-only", async () => {
    const ts = await startServer();
    expect(withoutDetail((await put(ts, "/api/v1/data/entries/0", "pin=1")).text)).toBe(failure(6, "JSON_ERROR_READ_ONLY"));
    expect(withoutDetail((await put(ts, "/api/v1/data/entries/3/pin", "pin=true")).text)).toBe(failure(6, "JSON_ERROR_READ_ONLY"));
    expect((await get(ts, "/api/v1/data/time")).text).toBe(ok(0));
  });

  it("an AO value lives in memory only; a DO with save=true is on disk before the answer", async () => {
    const ts = await startServer();
    const file = join(ts.stateDir, "data.json");
    const seeded = await readFile(file, "utf8");
    await put(ts, "/api/v1/data/entries/1", "pin=0.5");
    expect(await readFile(file, "utf8")).toBe(seeded);
    await put(ts, "/api/v1/data/entries/2", "pin=0");
    const onDisk = JSON.parse(await readFile(file, "utf8")) as { entries: Array<{ pin: unknown }> };
    expect(onDisk.entries.map((e) => e.pin)).toEqual([347, 0.004, false, false]);
  });
});
