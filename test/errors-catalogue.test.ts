// Every row of docs/api.md §5's error table, through the real server, and the order in which errors win.

import { readFile, readdir } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CATALOGUE } from "../src/http/errors.ts";
import { NODE_FS, type StoreFs } from "../src/state/store.ts";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { SILENT } from "../src/common/log.ts";
import { IoBridge } from "../src/io/io-bridge.ts";
import { call, cleanup, closeAgents, deferCleanup, failure, ok, withoutDetail, startServer, waitFor, type Answer, type TestServer } from "./helpers.ts";

// Most rows are refusals that change nothing: they share one server whose throttle never trips,
// and the rows that need their own server keep it until the end of the file.
let shared: TestServer;
beforeAll(async () => {
  shared = await startServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 1_000_000 } } });
});
afterAll(async () => {
  await cleanup();
  await closeAgents();
});

/** docs/api.md §5's table, copied by hand: the code's catalogue must match the contract. */
const DOCUMENTED_TABLE: ReadonlyArray<readonly [number, string, number]> = [
  [0, "JSON_ERROR_NONE", 200],
  [1, "JSON_ERROR_PATH_NOT_FOUND", 200],
  [2, "JSON_ERROR_ENDPOINT_NOT_FOUND", 404],
  [3, "JSON_ERROR_READ_DENIED", 401],
  [4, "JSON_ERROR_WRITE_DENIED", 403],
  [5, "JSON_ERROR_METHOD_NOT_ALLOWED", 405],
  [6, "JSON_ERROR_READ_ONLY", 400],
  [7, "JSON_ERROR_UNKNOWN_MEMBER", 400],
  [8, "JSON_ERROR_INVALID_VALUE", 400],
  [9, "JSON_ERROR_BAD_REQUEST", 400],
  [10, "JSON_ERROR_BODY_TOO_LARGE", 413],
  [11, "JSON_ERROR_UNSUPPORTED_MEDIA_TYPE", 415],
  [12, "JSON_ERROR_TOO_MANY_ATTEMPTS", 429],
  [13, "JSON_ERROR_STORAGE", 503],
  [14, "JSON_ERROR_INTERNAL", 500],
  [15, "JSON_ERROR_HEADERS_TOO_LARGE", 431],
  [16, "JSON_ERROR_KEY_INACTIVE", 401],
  [17, "JSON_ERROR_ORIGIN_DENIED", 403],
  [18, "JSON_ERROR_IO", 502],
];

const RD1 = { rd: "rdKey1" };
const RW1 = { rd: "rdKey1", wr: "wrKey1" };
const PAIR_INDEX: Record<string, number> = { properties: 1, apikeys: 2, httpro: 3, httprw: 4, httpsu: 5, process: 6, data: 7 };

/** The factory read and write keys of the endpoint a path names. */
function keysFor(path: string): { rd: string; wr: string } {
  const n = PAIR_INDEX[path.split("/")[3] ?? ""] ?? 0;
  return { rd: `rdKey${n}`, wr: `wrKey${n}` };
}

/** Asserts a whole failure answer: status, exact envelope, Content-Type and Content-Length. */
function expectError(a: Pick<Answer, "status" | "headers" | "text">, code: number): void {
  const row = DOCUMENTED_TABLE.find((r) => r[0] === code) as readonly [number, string, number];
  expect({ status: a.status, text: withoutDetail(a.text) }).toEqual({ status: row[2], text: failure(code, row[1]) });
  expect(a.headers["content-type"]).toBe("application/json");
  expect(a.headers["content-length"]).toBe(String(Buffer.byteLength(a.text)));
}

interface RawAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly text: string;
}

/** Sends raw bytes and reads one HTTP answer (to its Content-Length, or until the server closes). */
function raw(port: number, bytes: string | Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no answer within 5 s"));
    }, 5_000);
    let received = Buffer.alloc(0);
    const parse = (): RawAnswer | undefined => {
      const end = received.indexOf("\r\n\r\n");
      if (end === -1) return undefined;
      const [statusLine = "", ...lines] = received.subarray(0, end).toString("latin1").split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body = received.subarray(end + 4);
      const length = Number(headers["content-length"] ?? NaN);
      if (!(body.length >= length)) return undefined;
      return { status: Number(statusLine.split(" ")[1]), headers, text: body.subarray(0, length).toString() };
    };
    const finish = (answer: RawAnswer | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      if (answer === undefined) reject(new Error(`incomplete answer: ${JSON.stringify(received.toString())}`));
      else resolve(answer);
    };
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const answer = parse();
      if (answer !== undefined) finish(answer);
    });
    socket.on("close", () => finish(parse()));
    socket.on("error", () => undefined); // a reset after the answer is read is fine; 'close' follows
    socket.write(bytes);
  });
}

describe("the catalogue", () => {
  it("is docs/api.md §5's table, row for row", () => {
    expect(CATALOGUE.map((e) => [e.code, e.message, e.status])).toEqual(DOCUMENTED_TABLE);
  });
});

describe("error 0: success", () => {
  it("answers 200, the envelope with data, application/json and an exact Content-Length", async () => {
    const ts = shared;
    const a = await call(ts, "GET", "/api/v1/properties/mqtt/port", RD1);
    expect(a.status).toBe(200);
    expect(a.text).toBe(ok(1883));
    expect(a.headers["content-type"]).toBe("application/json");
    expect(a.headers["content-length"]).toBe(String(Buffer.byteLength(a.text)));
  });
});

describe("error 1: the endpoint exists, the sub-path does not", () => {
  it.each([
    "/api/v1/properties/nope",
    "/api/v1/process/entries/01",
    "/api/v1/process/entries/-1",
    "/api/v1/process/entries/1e0",
    "/api/v1/process/entries/4",
    "/api/v1/process/entries/%200",
    "/api/v1/properties/name/deeper",
    "/api/v1/properties/Json+typeName/x",
  ])("GET %s", async (path) => {
    const ts = shared;
    expectError(await call(ts, "GET", path, { rd: keysFor(path).rd }), 1);
  });

  it("a dot segment is a member name like any other (raw, since clients resolve it)", async () => {
    const ts = shared;
    expectError(await raw(ts.port, "GET /api/v1/properties/../apikeys HTTP/1.1\r\nHost: x\r\nApiRdKey: rdKey1\r\n\r\n"), 1);
  });

  it("also for a PUT, and for the open endpoint device", async () => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/properties/networkInterfaces/1", { ...RW1, body: "domain=x" }), 1);
    expectError(await call(ts, "GET", "/api/v1/device/1"), 1);
  });
});

describe("error 2: no such endpoint, or a path outside /api/v1/", () => {
  // Paths outside /api/ are the homepage's (test/homepage-files.test.ts).
  it.each(["/api/", "/api/v1", "/api/v2/properties", "/api/v1/nope", "/api/v1/nope/name", "/api/v1/%ZZ"])(
    "GET %s",
    async (path) => {
      const ts = shared;
      expectError(await call(ts, "GET", path, RD1), 2);
    },
  );

  it("also for a PUT or a DELETE", async () => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/nope", { ...RW1, body: "name=x" }), 2);
    expectError(await call(ts, "DELETE", "/api/v1/nope"), 2);
  });
});

describe("error 3: ApiRdKey missing or wrong", () => {
  it("refuses a read without the key, with a wrong one, or with another endpoint's", async () => {
    const ts = shared;
    expectError(await call(ts, "GET", "/api/v1/properties"), 3);
    expectError(await call(ts, "GET", "/api/v1/properties", { rd: "rdKey1x" }), 3);
    expectError(await call(ts, "GET", "/api/v1/properties", { rd: "rdkey1" }), 3);
    expectError(await call(ts, "GET", "/api/v1/properties", { rd: "rdKey2" }), 3);
  });

  it("refuses a write that has the write key alone, or a wrong read key", async () => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/properties", { wr: "wrKey1", body: "name=x" }), 3);
    expectError(await call(ts, "PUT", "/api/v1/properties", { rd: "rdKey2", wr: "wrKey1", body: "name=x" }), 3);
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
  });
});

describe("error 4: read key right, ApiWrKey missing or wrong", () => {
  it("refuses the write and changes nothing", async () => {
    const ts = shared;
    const refused = await call(ts, "PUT", "/api/v1/properties", { ...RD1, body: "name=x" });
    expectError(refused, 4);
    expect(refused.headers["connection"]).toBe("close"); // the body was never read
    expectError(await call(ts, "PUT", "/api/v1/properties", { ...RD1, wr: "wrKey2", body: "name=x" }), 4);
    expectError(await call(ts, "PUT", "/api/v1/properties", { ...RD1, wr: "", body: "name=x" }), 4);
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
  });
});

describe("error 5: method not allowed, with Allow", () => {
  it.each(["DELETE", "POST", "OPTIONS", "PATCH"])("%s on a keyed endpoint lists GET, HEAD, PUT", async (method) => {
    const ts = shared;
    const a = await call(ts, method, "/api/v1/properties", RW1);
    expectError(a, 5);
    expect(a.headers["allow"]).toBe("GET, HEAD, PUT");
  });

  it.each(["TRACE", "PROPFIND", "MKCOL"])("%s (sent raw) answers 5 too", async (method) => {
    const ts = shared;
    const a = await raw(ts.port, `${method} /api/v1/properties HTTP/1.1\r\nHost: x\r\nApiRdKey: rdKey1\r\n\r\n`);
    expectError(a, 5);
    expect(a.headers["allow"]).toBe("GET, HEAD, PUT");
  });

  it.each(["PUT", "DELETE", "POST"])("%s on device lists GET, HEAD", async (method) => {
    const ts = shared;
    const a = await call(ts, method, "/api/v1/device/0", method === "PUT" ? { body: "address=x" } : {});
    expectError(a, 5);
    expect(a.headers["allow"]).toBe("GET, HEAD");
  });
});

describe("error 6: a member that is not writable", () => {
  it.each([
    ["the type name", "/api/v1/properties", "Json%2BtypeName=x"],
    ["the type revision", "/api/v1/properties/mqtt", "Json%2BtypeRevision=1"],
    ["the type name, as a leaf", "/api/v1/properties/Json%2BtypeName", "Json%2BtypeName=x"],
    ["the name of a key pair", "/api/v1/apikeys/keys/0", "name=x"],
    ["a process pin", "/api/v1/process/entries/1", "pin=XB.3"],
    ["the MAC of a network interface", "/api/v1/properties/networkInterfaces/0", "address=004086000000"],
    ["an input's value", "/api/v1/data/entries/0", "pin=1"],
    ["an output's time", "/api/v1/data/entries/1", "time=5"],
    ["the data document's time", "/api/v1/data", "time=5"],
    ["a key pair array", "/api/v1/apikeys/keys", "rd=x"],
    ["the process entries array", "/api/v1/process/entries", "name=x"],
  ])("%s", async (_what, path, body) => {
    const ts = shared;
    const pair = keysFor(path);
    const before = await call(ts, "GET", path, pair);
    expectError(await call(ts, "PUT", path, { ...pair, body }), 6);
    expect((await call(ts, "GET", path, pair)).text).toBe(before.text);
  });

  it("device is read-only as a whole: a PUT is a method it does not allow (5)", async () => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/device/0/board", { body: "partNumber=1" }), 5);
  });
});

describe("error 7: a member the object does not have", () => {
  it.each([
    ["/api/v1/properties", "nope=1"],
    ["/api/v1/properties", "Name=x"],
    ["/api/v1/properties", "__proto__=x"],
    ["/api/v1/properties", "constructor=x"],
    ["/api/v1/properties/mqtt", "port=1&portx=2"],
  ])("PUT %s %s", async (path, body) => {
    const ts = shared;
    expectError(await call(ts, "PUT", path, { ...RW1, body }), 7);
  });

  it("also in a JSON body", async () => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/properties", { ...RW1, body: { nope: 1 } }), 7);
    expectError(await call(ts, "PUT", "/api/v1/properties", { ...RW1, body: '{"__proto__":{"name":"x"}}', contentType: "application/json" }), 7);
  });
});

describe("error 8: a value of the wrong kind or out of range", () => {
  const long = (n: number): string => "a".repeat(n);
  it.each([
    ["string with a control character", "/api/v1/properties", "name=a%01b"],
    ["string with a newline", "/api/v1/properties", "name=a%0Ab"],
    ["string with DEL", "/api/v1/properties", "name=a%7Fb"],
    ["string over 255 characters", "/api/v1/properties", `name=${long(256)}`],
    ["integer with a fraction", "/api/v1/properties/mqtt", "keepalive=1.5"],
    ["integer as a word", "/api/v1/properties/mqtt", "keepalive=sixty"],
    ["integer with a leading zero", "/api/v1/properties/mqtt", "keepalive=060"],
    ["integer empty", "/api/v1/properties/mqtt", "keepalive="],
    ["integer below its minimum", "/api/v1/process/entries/2", "pulse=-1"],
    ["integer above its maximum", "/api/v1/process/entries/0", "shift=32"],
    ["number as a word", "/api/v1/data/entries/1", "pin=high"],
    ["number that overflows", "/api/v1/data/entries/1", "pin=1e999"],
    ["number in hex", "/api/v1/data/entries/1", "pin=0x10"],
    ["boolean as yes", "/api/v1/properties/mqtt", "enable=yes"],
    ["boolean as 2", "/api/v1/properties/mqtt", "enable=2"],
    ["boolean as TRUE", "/api/v1/properties/mqtt", "enable=TRUE"],
    ["ipv4 with an octet over 255", "/api/v1/properties/mqtt", "address=192.168.15.256"],
    ["ipv4 with three octets", "/api/v1/properties/mqtt", "address=192.168.15"],
    ["ipv4 with a leading zero", "/api/v1/properties/mqtt", "address=192.168.015.1"],
    ["ipv4 as a host name", "/api/v1/properties/mqtt", "address=broker.local"],
    ["port 0", "/api/v1/properties/mqtt", "port=0"],
    ["port 65536", "/api/v1/properties/mqtt", "port=65536"],
    ["key with a space", "/api/v1/apikeys/keys/6", "rd=a%20b"],
    ["key with a + sent raw (curl -d rd=a+b)", "/api/v1/apikeys/keys/6", "rd=a+b"],
    ["key over 128 characters", "/api/v1/apikeys/keys/6", `wr=${long(129)}`],
    ["key with a non-ASCII character", "/api/v1/apikeys/keys/6", "rd=cl%C3%A9"],
    ["key with a tab", "/api/v1/apikeys/keys/6", "rd=a%09b"],
  ])("%s", async (_what, path, body) => {
    const ts = shared;
    const pair = keysFor(path);
    const before = await call(ts, "GET", path, pair);
    expectError(await call(ts, "PUT", path, { ...pair, body }), 8);
    expect((await call(ts, "GET", path, pair)).text).toBe(before.text);
  });

  it("JSON values must have the member's JSON type", async () => {
    const ts = shared;
    for (const body of [{ port: "1883" }, { port: 1883.5 }, { enable: 2 }, { enable: "true" }, { root: 5 }, { root: null }, { keepalive: "60" }, { address: [192, 168, 0, 1] }]) {
      expectError(await call(ts, "PUT", "/api/v1/properties/mqtt", { ...RW1, body }), 8);
    }
  });
});

describe("error 9: a bad request", () => {
  it.each([
    ["an empty form body", "", undefined],
    ["a field without =", "name", undefined],
    ["a field without a name", "=x", undefined],
    ["a field named twice", "name=a&name=b", undefined],
    ["an empty field at the end", "name=a&", undefined],
    ["an empty field inside", "name=a&&domain=b", undefined],
    ["bad percent-encoding in a value", "name=%ZZ", undefined],
    ["a percent-encoded byte that is not UTF-8", "name=%C3", undefined],
    ["malformed JSON", '{"name":', "application/json"],
    ["a JSON array", '["name","x"]', "application/json"],
    ["a JSON string", '"name"', "application/json"],
    ["an empty JSON object", "{}", "application/json"],
    ["an empty JSON body", "", "application/json"],
    ["a JSON member named twice", '{"name":"a","name":"b"}', "application/json"],
    ["a JSON member named twice, once escaped", '{"name":"a","n\\u0061me":"b"}', "application/json"],
  ])("%s", async (_what, body, contentType) => {
    const ts = shared;
    const a = await call(ts, "PUT", "/api/v1/properties", { ...RW1, body: body as string, ...(contentType === undefined ? {} : { contentType }) });
    expectError(a, 9);
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
  });

  it("a body whose bytes are not UTF-8", async () => {
    const ts = shared;
    const head = "PUT /api/v1/properties HTTP/1.1\r\nHost: x\r\nApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\nContent-Length: 6\r\n\r\n";
    expectError(await raw(ts.port, Buffer.concat([Buffer.from(head + "name="), Buffer.from([0xff])])), 9);
  });

  it("a PUT without any body", async () => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/properties", RW1), 9);
  });

  it("a leaf PUT whose body names another member", async () => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/properties/name", { ...RW1, body: "domain=x" }), 9);
    expectError(await call(ts, "PUT", "/api/v1/properties/name", { ...RW1, body: "name=x&nope=y" }), 9);
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
  });

  it("a malformed sub-path (bad percent-encoding, an empty segment)", async () => {
    const ts = shared;
    expectError(await call(ts, "GET", "/api/v1/properties/%ZZ", RD1), 9);
    expectError(await call(ts, "GET", "/api/v1/properties/%C3", RD1), 9);
    expectError(await call(ts, "GET", "/api/v1/properties//name", RD1), 9);
    expectError(await call(ts, "PUT", "/api/v1/properties/mqtt%ZZ", { ...RW1, body: "port=1" }), 9);
  });

  it("an ApiRdKey or ApiWrKey header sent twice", async () => {
    const ts = shared;
    const twiceRd = "GET /api/v1/properties/name HTTP/1.1\r\nHost: x\r\nApiRdKey: rdKey1\r\nApiRdKey: rdKey1\r\nConnection: close\r\n\r\n";
    expectError(await raw(ts.port, twiceRd), 9);
    const twiceWr =
      "PUT /api/v1/properties HTTP/1.1\r\nHost: x\r\nApiRdKey: rdKey1\r\napiwrkey: wrKey1\r\nAPIWRKEY: wrKey1\r\n" +
      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\nConnection: close\r\n\r\nname=x";
    expectError(await raw(ts.port, twiceWr), 9);
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
  });

  it("a request node's parser refuses gets the envelope too", async () => {
    const ts = shared;
    expectError(await raw(ts.port, "GET /api/v1/device HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"), 9);
    expectError(await raw(ts.port, "NOT A REQUEST\r\n\r\n"), 9);
  });
});

describe("error 10: a body over the limit (4096 bytes)", () => {
  it("refuses a declared Content-Length over the limit; 4096 bytes exactly is read", async () => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/properties", { ...RW1, body: `name=${"a".repeat(4092)}` }), 10);
    // Exactly at the limit the body is read and judged: a 4091-character name is too long (8).
    expectError(await call(ts, "PUT", "/api/v1/properties", { ...RW1, body: `name=${"a".repeat(4091)}` }), 8);
  });

  it("refuses a declared length over the limit before a byte of the body is sent", async () => {
    const ts = shared;
    const head = "PUT /api/v1/properties HTTP/1.1\r\nHost: x\r\nApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\nContent-Length: 4097\r\n\r\n";
    const a = await raw(ts.port, head);
    expectError(a, 10);
    expect(a.headers["connection"]).toBe("close");
  });

  it("refuses a chunked body once it passes the limit", async () => {
    const ts = shared;
    const chunk = "a".repeat(1000);
    let request =
      "PUT /api/v1/properties HTTP/1.1\r\nHost: x\r\nApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\n" +
      "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nname=\r\n";
    for (let i = 0; i < 5; i++) request += `3e8\r\n${chunk}\r\n`;
    request += "0\r\n\r\n";
    const a = await raw(ts.port, request);
    expectError(a, 10);
    expect(a.headers["connection"]).toBe("close");
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
  });
});

describe("error 11: a body neither form-encoded nor JSON", () => {
  it.each(["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/jsonx"])("%s", async (contentType) => {
    const ts = shared;
    expectError(await call(ts, "PUT", "/api/v1/properties", { ...RW1, body: "name=x", contentType }), 11);
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
  });
});

describe("error 12: too many wrong keys from one address", () => {
  it("blocks the address with Retry-After, even for the right key; device still answers", async () => {
    const ts = await startServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 3 } } });
    const from = { localAddress: "127.0.0.5" };
    for (let i = 0; i < 3; i++) expectError(await call(ts, "GET", "/api/v1/properties", { ...from, rd: `guess${i}` }), 3);
    const blocked = await call(ts, "GET", "/api/v1/properties", { ...from, ...RD1 });
    expectError(blocked, 12);
    expect(Number(blocked.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(Number(blocked.headers["retry-after"])).toBeLessThanOrEqual(30);
    expect((await call(ts, "GET", "/api/v1/device/0/address", from)).text).toBe(ok("004082ABCDEF"));
    // Another address is not blocked.
    expect((await call(ts, "GET", "/api/v1/properties/name", { localAddress: "127.0.0.6", ...RD1 })).text).toBe(ok("eNetMini1"));
  });
});

describe("error 13: the change could not be made durable", () => {
  it("answers 503 and changes nothing, in memory or on disk", async () => {
    let failRenames = false;
    const fs: StoreFs = {
      ...NODE_FS,
      rename: (from, to) => (failRenames ? Promise.reject(Object.assign(new Error("EIO: i/o error"), { code: "EIO" })) : NODE_FS.rename(from, to)),
    };
    const ts = await startServer({ load: { fs } });
    const file = join(ts.stateDir, "properties.json");
    const before = await readFile(file);
    failRenames = true;
    expectError(await call(ts, "PUT", "/api/v1/properties", { ...RW1, body: "name=lost" }), 13);
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
    expect(await readFile(file)).toEqual(before);
    expect((await readdir(ts.stateDir)).filter((n) => n.startsWith("."))).toEqual([]);
    failRenames = false;
    expect((await call(ts, "PUT", "/api/v1/properties/name", { ...RW1, body: "name=kept" })).text).toBe(ok("kept"));
  });
});

describe("error 14: anything unforeseen", () => {
  // There is no honest way to break the pipeline from outside; the server's clock is a real
  // collaborator (ServerOptions.now) that a PUT consults, so a clock that throws exercises the
  // catch-all without a test-only hook.
  it("answers 500 with the catalogue message only; the detail goes to the log", async () => {
    const lines: string[] = [];
    const log = { log: (level: string, message: string, fields?: object) => void lines.push(`${level} ${message} ${JSON.stringify(fields)}`) };
    // The clock fails once, during the PUT (the throttle and the write stamp both read it).
    let clockBroken = true;
    const ts = await startServer({
      server: {
        log,
        clock: () => {
          if (!clockBroken) return Date.now();
          clockBroken = false;
          throw new Error("clock unreadable: secret-detail");
        },
      },
    });
    const a = await call(ts, "PUT", "/api/v1/properties", { ...RW1, body: "name=x" });
    expectError(a, 14);
    expect(a.text).not.toContain("secret-detail");
    expect(lines.some((l) => l.startsWith("error internal error") && l.includes("secret-detail"))).toBe(true);
    expect((await call(ts, "GET", "/api/v1/properties/name", RD1)).text).toBe(ok("eNetMini1"));
  });
});

describe("error 15: request line and headers over the limit", () => {
  it("a 20 KB header", async () => {
    const ts = shared;
    const a = await raw(ts.port, `GET /api/v1/device HTTP/1.1\r\nHost: x\r\nX-Filler: ${"a".repeat(20_000)}\r\n\r\n`);
    expectError(a, 15);
    expect(a.headers["connection"]).toBe("close");
  });

  it("a request target over 1024 bytes; 1024 exactly is served", async () => {
    const ts = shared;
    const at = (n: number): string => "/api/v1/properties/" + "a".repeat(n - "/api/v1/properties/".length);
    expectError(await call(ts, "GET", at(1025), RD1), 15);
    expectError(await call(ts, "GET", at(1024), RD1), 1);
  });
});

describe("errors 16 and 17: the keys are right, the pair's life says no (docs/api.md §8)", () => {
  it("16: a pair switched off, or expired; 17: a client outside its origins", async () => {
    const ts = await startServer();
    const master = { rd: "rdKey2", wr: "wrKey2" };
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/0", { ...master, body: "enabled=false" })).status).toBe(200);
    expectError(await call(ts, "GET", "/api/v1/properties/name", RD1), 16);
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/0", { ...master, body: "enabled=true&expires=2001-01-01+00%3A00%3A00" })).status).toBe(200);
    expectError(await call(ts, "PUT", "/api/v1/properties/name", { ...RW1, body: "name=x" }), 16);
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/0", { ...master, body: "expires=&origins=127.0.0.31" })).status).toBe(200);
    expectError(await call(ts, "GET", "/api/v1/properties/name", { ...RD1, localAddress: "127.0.0.32" }), 17);
    expect((await call(ts, "GET", "/api/v1/properties/name", { ...RD1, localAddress: "127.0.0.31" })).text).toBe(ok("eNetMini1"));
  });
});

describe("error 18: an output the I/O driver did not apply", () => {
  /** A server with an I/O driver: `node test/io-drivers/scripted.mjs ...args`, or a program that cannot start. */
  async function withDriver(argv: readonly string[]): Promise<{ ts: TestServer; io: IoBridge }> {
    let io: IoBridge | undefined;
    const ts = await startServer({
      withDevice: (device) => {
        io = new IoBridge(device, { argv, timeoutMs: 500, log: SILENT, backoff: { initialMs: 50, maxMs: 50, resetAfterMs: 60_000 } });
        io.start();
        return { outputs: io };
      },
    });
    const bridge = io as unknown as IoBridge;
    deferCleanup(() => bridge.stop());
    return { ts, io: bridge };
  }
  const DATA = { rd: "rdKey7", wr: "wrKey7" };

  it("no driver runs: 502, and nothing changed", async () => {
    const { ts } = await withDriver(["/nonexistent/io-driver"]);
    expectError(await call(ts, "PUT", "/api/v1/data/entries/2/pin", { ...DATA, body: "pin=false" }), 18);
    expect((await call(ts, "GET", "/api/v1/data/entries/2/pin", DATA)).text).toBe(ok(true));
  });

  it("the driver refuses: 502", async () => {
    const { ts, io } = await withDriver([process.execPath, join(__dirname, "io-drivers", "scripted.mjs"), "--refuse-value", "5"]);
    await waitFor("the driver", () => (io.driverReady ? true : undefined));
    expectError(await call(ts, "PUT", "/api/v1/data/entries/1", { ...DATA, body: "pin=5" }), 18);
    expect((await call(ts, "PUT", "/api/v1/data/entries/1", { ...DATA, body: "pin=6" })).status).toBe(200);
  });

  it("comes after the member errors (7, 6, 8), and only for outputs' values", async () => {
    const { ts } = await withDriver(["/nonexistent/io-driver"]);
    expectError(await call(ts, "PUT", "/api/v1/data/entries/2", { ...DATA, body: "pin=false&nope=1" }), 7);
    expectError(await call(ts, "PUT", "/api/v1/data/entries/2", { ...DATA, body: "pin=false&error=1" }), 6);
    expectError(await call(ts, "PUT", "/api/v1/data/entries/2/pin", { ...DATA, body: "pin=2" }), 8);
    expectError(await call(ts, "PUT", "/api/v1/data/entries/9/pin", { ...DATA, body: "pin=true" }), 1);
    expect((await call(ts, "PUT", "/api/v1/properties/name", { ...RW1, body: "name=x" })).status).toBe(200);
  });
});

describe("precedence (docs/api.md §5: 2, 5, 12, 3, 4, 16, 17, 10/11/9, 1, 7/6/8, 18)", () => {
  let ts: TestServer;
  const put = (path: string, options: Parameters<typeof call>[3]): Promise<Answer> => call(ts, "PUT", path, options);

  it("unknown endpoint (2) before method (5); method before keys (3)", async () => {
    ts = shared;
    expectError(await call(ts, "DELETE", "/api/v1/nope"), 2);
    expectError(await call(ts, "DELETE", "/api/v1/properties/nope", { rd: "wrong" }), 5);
  });

  it("method (5) before the throttle (12); throttle before the read key (3)", async () => {
    ts = await startServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 1 } } });
    const from = { localAddress: "127.0.0.7" };
    expectError(await call(ts, "GET", "/api/v1/apikeys", { ...from, rd: "guess" }), 3);
    expectError(await call(ts, "POST", "/api/v1/apikeys", from), 5);
    expectError(await call(ts, "GET", "/api/v1/apikeys", from), 12);
  });

  it("read key (3) before write key (4) and before lookup (1): no one learns what exists", async () => {
    ts = shared;
    expectError(await call(ts, "GET", "/api/v1/properties/nope", { rd: "wrong" }), 3);
    expectError(await call(ts, "GET", "/api/v1/properties/name", { rd: "wrong" }), 3);
    expectError(await put("/api/v1/properties/nope", { rd: "wrong", body: "x" }), 3);
  });

  it("write key (4) before body size, type and syntax (10, 11, 9)", async () => {
    ts = shared;
    expectError(await put("/api/v1/properties", { ...RD1, body: "a".repeat(5000) }), 4);
    expectError(await put("/api/v1/properties", { ...RD1, body: "name=x", contentType: "text/plain" }), 4);
    expectError(await put("/api/v1/properties", { ...RD1, body: "=" }), 4);
  });

  it("write key (4) before inactive (16) before origin (17) before body size, type and syntax (10, 11, 9) and path (1)", async () => {
    ts = await startServer();
    const master = { rd: "rdKey2", wr: "wrKey2" };
    expect((await put("/api/v1/apikeys/keys/0", { ...master, body: "enabled=false&origins=127.0.0.33" })).status).toBe(200);
    const outside = { localAddress: "127.0.0.34" };
    expectError(await put("/api/v1/properties/nope", { ...outside, rd: "wrong", body: "x" }), 3);
    expectError(await put("/api/v1/properties/nope", { ...outside, ...RD1, wr: "wrong", body: "x" }), 4);
    expectError(await put("/api/v1/properties/nope", { ...outside, ...RW1, body: "a".repeat(5000) }), 16);
    expect((await put("/api/v1/apikeys/keys/0", { ...master, body: "enabled=true" })).status).toBe(200);
    expectError(await put("/api/v1/properties/nope", { ...outside, ...RW1, body: "a".repeat(5000), contentType: "text/plain" }), 17);
    expectError(await put("/api/v1/properties/nope", { localAddress: "127.0.0.33", ...RW1, body: "a".repeat(5000) }), 10);
  });

  it("body size (10) before type (11) before syntax (9) before path (1)", async () => {
    ts = shared;
    expectError(await put("/api/v1/properties/nope", { ...RW1, body: "a".repeat(5000), contentType: "text/plain" }), 10);
    expectError(await put("/api/v1/properties/nope", { ...RW1, body: "", contentType: "text/plain" }), 11);
    expectError(await put("/api/v1/properties/nope", { ...RW1, body: "a=1&a=2" }), 9);
    expectError(await put("/api/v1/properties/%ZZ", { ...RW1, body: "a=1&a=2" }), 9);
  });

  it("path (1) before members (7, 6, 8)", async () => {
    ts = shared;
    expectError(await put("/api/v1/properties/nope", { ...RW1, body: "nope=1" }), 1);
    expectError(await put("/api/v1/process/entries/01", { rd: "rdKey6", wr: "wrKey6", body: "pin=x" }), 1);
  });

  it("unknown (7) before read-only (6) before invalid (8), wherever they stand in the body", async () => {
    ts = shared;
    expectError(await put("/api/v1/properties/mqtt", { ...RW1, body: "port=0&nope=1" }), 7);
    expectError(await put("/api/v1/properties/mqtt", { ...RW1, body: "Json%2BtypeName=x&nope=1" }), 7);
    expectError(await put("/api/v1/properties/mqtt", { ...RW1, body: "port=0&Json%2BtypeRevision=1" }), 6);
    expectError(await put("/api/v1/properties/mqtt", { ...RW1, body: { port: "1883", nope: 1 } }), 7);
    expect((await call(ts, "GET", "/api/v1/properties/mqtt/port", RD1)).text).toBe(ok(1883));
  });
});
