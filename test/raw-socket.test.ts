// Malformed and hostile requests sent as raw bytes: the exact answer (always our envelope, never
// node's plain text), whether the connection stays usable, and that the server serves afterwards.
// The catalogue's own rows live in errors-catalogue.test.ts; these are the attacks around them.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { call, cleanup, closeAgents, ok, startServer, type TestServer, withoutLastUse } from "./helpers.ts";
import { expectFailure, RawClient, rawOnce, type RawAnswer } from "./raw-client.ts";

const H = "Host: device\r\n";
const RD1 = "ApiRdKey: rdKey1\r\n";
const KEYS1 = "ApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\n";
const ADDRESS = ok("004082ABCDEF");
const FOLLOW_UP = `GET /api/v1/device/0/address HTTP/1.1\r\n${H}\r\n`;

let ts: TestServer;
let factoryKeys: string;

beforeAll(async () => {
  // Wrong keys sent here on purpose must not get 127.0.0.1 blocked for the tests after them.
  ts = await startServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 1_000 } } });
  factoryKeys = (await call(ts, "GET", "/api/v1/apikeys", { rd: "rdKey2" })).text;
});

afterAll(async () => {
  // Whatever came before, the server still serves, and neither the keys nor the name changed.
  expect(withoutLastUse((await call(ts, "GET", "/api/v1/apikeys", { rd: "rdKey2" })).text)).toBe(withoutLastUse(factoryKeys));
  expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
  await closeAgents();
  await cleanup();
});

/** Sends a request, returns its answer, and proves the connection still serves the next one. */
async function answeredKeepingAlive(bytes: string): Promise<RawAnswer> {
  const client = new RawClient(ts.port).send(bytes);
  try {
    const answer = await client.next();
    expect(answer.headers["connection"]).toBe("keep-alive");
    client.send(FOLLOW_UP);
    expect((await client.next()).text).toBe(ADDRESS);
    return answer;
  } finally {
    client.destroy();
  }
}

/** Sends bytes, returns the one answer, and checks the server then closes the connection. */
async function answeredThenClosed(bytes: string | Buffer, options: { end?: boolean } = {}): Promise<RawAnswer> {
  const client = new RawClient(ts.port).send(bytes);
  if (options.end === true) client.end();
  try {
    const answer = await client.next();
    expect(answer.headers["connection"]).toBe("close");
    expect(await client.closed()).toBe("");
    return answer;
  } finally {
    client.destroy();
  }
}

describe("request lines and headers node's parser refuses: the envelope (9), then the connection closes", () => {
  it.each([
    ["lines ending in a bare LF", `GET /api/v1/device HTTP/1.1\nHost: device\n\n`],
    ["a bare CR inside the request line", `GET /api/v1/device HTTP/1.1\r${H}\r\n`],
    ["a NUL byte in the target", `GET /api/v1/device\0 HTTP/1.1\r\n${H}\r\n`],
    ["a NUL byte in a header value", `GET /api/v1/device HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n`],
    ["an obs-fold continuation line", `GET /api/v1/device HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`],
    ["a key header folded over two lines", `GET /api/v1/properties/name HTTP/1.1\r\n${H}ApiRdKey: rdKey\r\n 1\r\n\r\n`],
    ["a header line without a colon", `GET /api/v1/device HTTP/1.1\r\n${H}Garbage\r\n\r\n`],
    ["whitespace between a header name and its colon", `GET /api/v1/properties/name HTTP/1.1\r\n${H}ApiRdKey : rdKey1\r\n\r\n`],
    ["a space inside the target", `GET /api/v1/device /0 HTTP/1.1\r\n${H}\r\n`],
    ["a method in lower case", `get /api/v1/device HTTP/1.1\r\n${H}\r\n`],
    ["an unknown protocol version", `GET /api/v1/device HTTP/1.x\r\n${H}\r\n`],
    ["a TLS ClientHello on the plain port", Buffer.from("16030100a5010000a10303", "hex")],
  ])("%s", async (_what, bytes) => {
    expectFailure(await answeredThenClosed(bytes), 9);
  });
});

describe("Content-Length and Transfer-Encoding", () => {
  const put = (framing: string, body: string): string =>
    `PUT /api/v1/properties HTTP/1.1\r\n${H}${KEYS1}Content-Type: application/x-www-form-urlencoded\r\n${framing}\r\n${body}`;

  it.each([
    ["negative", "Content-Length: -1\r\n"],
    ["with a plus sign", "Content-Length: +6\r\n"],
    ["in hex", "Content-Length: 0x6\r\n"],
    ["two numbers in one", "Content-Length: 6 6\r\n"],
    ["over 2^64", "Content-Length: 18446744073709551616\r\n"],
    ["huge", "Content-Length: 99999999999999999999999\r\n"],
    ["sent twice, the same", "Content-Length: 6\r\nContent-Length: 6\r\n"],
    ["sent twice, different", "Content-Length: 6\r\nContent-Length: 7\r\n"],
    ["together with chunked", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"],
  ])("a Content-Length %s is refused (9) and closes the connection", async (_what, framing) => {
    expectFailure(await answeredThenClosed(put(framing, "name=x")), 9);
  });

  it.each([
    ["chunked twice", "Transfer-Encoding: chunked, chunked\r\n", "6\r\nname=x\r\n0\r\n\r\n"],
    ["not ending in chunked", "Transfer-Encoding: gzip\r\n", "name=x"],
    ["a chunk size that is not hex", "Transfer-Encoding: chunked\r\n", "ZZ\r\nname=x\r\n0\r\n\r\n"],
    ["a chunk size past 2^64", "Transfer-Encoding: chunked\r\n", "ffffffffffffffffff\r\nname=x\r\n0\r\n\r\n"],
  ])("a Transfer-Encoding %s is refused (9) and closes the connection", async (_what, framing, body) => {
    expectFailure(await answeredThenClosed(put(framing, body)), 9);
  });

  it("a Content-Length past the limit that still fits 2^53 is too large (10) without waiting for the body", async () => {
    expectFailure(await answeredThenClosed(put("Content-Length: 9007199254740993\r\n", "name=x")), 10);
  });

  it("the same Content-Length with a wrong key is refused for the key (3), the body left unread", async () => {
    const bytes = `PUT /api/v1/properties HTTP/1.1\r\n${H}ApiRdKey: not-it\r\nContent-Length: 999999\r\n\r\nname=x`;
    expectFailure(await answeredThenClosed(bytes), 3);
  });

  it("a body cut short by the client (FIN) answers 9 and changes nothing", async () => {
    expectFailure(await answeredThenClosed(put("Content-Length: 50\r\n", "name=cut"), { end: true }), 9);
    expectFailure(await answeredThenClosed(put("Transfer-Encoding: chunked\r\n", "8\r\nname=cu"), { end: true }), 9);
  });

  it("a Content-Length shorter than the body: the rest is read as the next request, and refused", async () => {
    const client = new RawClient(ts.port).send(put("Content-Length: 4\r\n", "name=x"));
    try {
      expectFailure(await client.next(), 9); // the body "name" has no "="
      const second = await client.next(); // "=x" is no request line
      expectFailure(second, 9);
      expect(second.headers["connection"]).toBe("close");
      expect(await client.closed()).toBe("");
    } finally {
      client.destroy();
    }
  });

  it("a body on a GET is not read: the answer closes the connection", async () => {
    const answer = await answeredThenClosed(`GET /api/v1/device/0/address HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`);
    expect(answer.text).toBe(ADDRESS);
  });
});

describe("a body the client never finishes", () => {
  it("is cut when the request times out, without an answer; the server serves others meanwhile", async () => {
    const quick = await startServer({ server: { headersTimeoutMs: 500, requestTimeoutMs: 1_000 } });
    const hanging = new RawClient(quick.port).send(`PUT /api/v1/properties HTTP/1.1\r\n${H}${KEYS1}Content-Length: 50\r\n\r\nname=hang`);
    try {
      expect((await call(quick, "GET", "/api/v1/device/0/address")).text).toBe(ADDRESS);
      expect(await hanging.closed()).toBe("");
      expect((await call(quick, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
    } finally {
      hanging.destroy();
    }
  });
});

describe("paths: dot segments, %2F and percent-encoding are never a way into another endpoint", () => {
  it.each([
    ["dot segments before the endpoint", "/api/v1/../v1/apikeys", RD1, 2],
    ["encoded dot segments as the endpoint", "/api/v1/%2e%2e/apikeys", RD1, 2],
    ["dot segments inside a document", "/api/v1/properties/../../v1/apikeys", RD1, 1],
    ["encoded dot segments inside a document", "/api/v1/properties/%2E%2E/apikeys", RD1, 1],
    ["%2F joining the endpoint to a member", "/api/v1/properties%2Fname", RD1, 2],
    ["%2F inside a document: one segment, not two", "/api/v1/properties/networkInterfaces%2F0", RD1, 1],
    ["%2F smuggling a traversal", "/api/v1/properties%2F..%2Fapikeys", RD1, 2],
    ["an encoded endpoint name still needs its own key", "/api/v1/%61pikeys", RD1, 3],
    ["a backslash is a character, not a separator", "/api/v1/properties\\..\\apikeys", RD1, 2],
    ["an encoded NUL", "/api/v1/properties/name%00", RD1, 1],
    ["a bad escape", "/api/v1/properties/%G1", RD1, 9],
    ["a truncated escape", "/api/v1/properties/name%", RD1, 9],
    ["a lone %", "/api/v1/properties/%", RD1, 9],
    ["an overlong UTF-8 encoding of /", "/api/v1/properties/%C0%AFname", RD1, 9],
    ["a bad escape, without the key: the key is checked first", "/api/v1/properties/%G1", "", 3],
  ])("%s: %s", async (_what, path, keys, code) => {
    expectFailure(await answeredKeepingAlive(`GET ${path} HTTP/1.1\r\n${H}${keys}\r\n`), code);
  });

  it("an encoded endpoint name is decoded and served with that endpoint's key", async () => {
    const answer = await answeredKeepingAlive(`GET /api/v1/%70roperties/name HTTP/1.1\r\n${H}${RD1}\r\n`);
    expect(answer.text).toBe(ok("eNetMini1"));
  });

  it("an absolute-form target and OPTIONS * are outside /api/v1/ (2)", async () => {
    expectFailure(await answeredKeepingAlive(`GET http://device/api/v1/device HTTP/1.1\r\n${H}\r\n`), 2);
    expectFailure(await answeredKeepingAlive(`OPTIONS * HTTP/1.1\r\n${H}\r\n`), 2);
  });

  it("a target over 1 KiB sent raw is 431 and closes the connection, as oversized headers do", async () => {
    expectFailure(await answeredThenClosed(`GET /api/v1/properties/${"a".repeat(9_000)} HTTP/1.1\r\n${H}\r\n`), 15);
  });
});

describe("methods and headers node would answer in plain text go through the pipeline", () => {
  it("CONNECT is refused like any method (2 or 5), then the connection closes", async () => {
    expectFailure(await answeredThenClosed(`CONNECT device:443 HTTP/1.1\r\n${H}\r\n`), 2);
    const answer = await answeredThenClosed(`CONNECT /api/v1/properties HTTP/1.1\r\n${H}\r\n`);
    expectFailure(answer, 5);
    expect(answer.headers["allow"]).toBe("GET, HEAD, PUT");
  });

  it("an HTTP/1.1 request without Host, or with two, is refused (9) in the envelope", async () => {
    expectFailure(await answeredKeepingAlive(`GET /api/v1/device HTTP/1.1\r\n\r\n`), 9);
    expectFailure(await answeredKeepingAlive(`GET /api/v1/device HTTP/1.1\r\n${H}Host: other\r\n\r\n`), 9);
  });

  it("HTTP/1.0 needs no Host; its answer closes the connection", async () => {
    expect((await answeredThenClosed(`GET /api/v1/device/0/address HTTP/1.0\r\n\r\n`)).text).toBe(ADDRESS);
  });

  it("an Expect other than 100-continue is ignored (no 417); 100-continue gets its 100", async () => {
    expect((await answeredKeepingAlive(`GET /api/v1/device/0/address HTTP/1.1\r\n${H}Expect: spaceship\r\n\r\n`)).text).toBe(ADDRESS);
    const client = new RawClient(ts.port).send(`PUT /api/v1/properties/mqtt/root HTTP/1.1\r\n${H}${KEYS1}Expect: 100-continue\r\nContent-Length: 8\r\n\r\n`);
    try {
      expect((await client.next()).status).toBe(100);
      client.send("root=mkc");
      expect((await client.next()).text).toBe(ok("mkc"));
    } finally {
      client.destroy();
    }
  });

  it("an Upgrade request is served as a plain request, then the connection is closed (node parses nothing after it)", async () => {
    const client = new RawClient(ts.port).send(`GET /api/v1/device/0/address HTTP/1.1\r\n${H}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n`);
    try {
      const answer = await client.next();
      expect(answer.text).toBe(ADDRESS);
      expect(answer.headers["connection"]).toBe("close");
      expect(await client.closed()).toBe("");
    } finally {
      client.destroy();
    }
  });

  it("a malformed request after a good one on the same connection: both answered in order, then closed", async () => {
    const client = new RawClient(ts.port).send(`${FOLLOW_UP}BAD\r\n\r\n`);
    try {
      expect((await client.next()).text).toBe(ADDRESS);
      const second = await client.next();
      expectFailure(second, 9);
      expect(second.headers["connection"]).toBe("close");
      expect(await client.closed()).toBe("");
    } finally {
      client.destroy();
    }
  });
});

describe("key headers", () => {
  it("a duplicated key header is refused (9) whichever copy is right, and is never compared or counted", async () => {
    const guarded = await startServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 1 } } });
    const from = "127.0.0.31";
    for (const pair of [
      "ApiRdKey: rdKey1\r\nApiRdKey: wrong-1\r\n",
      "ApiRdKey: wrong-2\r\napirdkey: rdKey1\r\n",
      "ApiRdKey: wrong-3\r\nAPIRDKEY: wrong-4\r\n",
      "ApiRdKey: \r\nApiRdKey: rdKey1\r\n",
    ]) {
      expectFailure(await rawOnce(guarded.port, `GET /api/v1/properties/name HTTP/1.1\r\n${H}${pair}\r\n`, from), 9);
    }
    // With one wrong key allowed before a block, none of those counted as a guess.
    expect((await call(guarded, "GET", "/api/v1/properties/name", { rd: "rdKey1", localAddress: from })).text).toBe(ok("eNetMini1"));
  });

  it("two values joined in one header line are one wrong key (3)", async () => {
    expectFailure(await answeredKeepingAlive(`GET /api/v1/properties/name HTTP/1.1\r\n${H}ApiRdKey: rdKey1, rdKey1\r\n\r\n`), 3);
  });

  it("a key far longer than any key (7,000 characters) is a wrong key (3); past the header limit, 431", async () => {
    expectFailure(await answeredKeepingAlive(`GET /api/v1/properties/name HTTP/1.1\r\n${H}ApiRdKey: ${"k".repeat(7_000)}\r\n\r\n`), 3);
    expectFailure(await answeredThenClosed(`GET /api/v1/properties/name HTTP/1.1\r\n${H}ApiRdKey: ${"k".repeat(9_000)}\r\n\r\n`), 15);
  });

  it("a byte outside ASCII in a key header is a wrong key (3)", async () => {
    const bytes = Buffer.concat([Buffer.from(`GET /api/v1/properties/name HTTP/1.1\r\n${H}ApiRdKey: rdKey`), Buffer.from([0xb1]), Buffer.from("\r\n\r\n")]);
    const client = new RawClient(ts.port).send(bytes);
    try {
      expectFailure(await client.next(), 3);
    } finally {
      client.destroy();
    }
  });
});

describe("pipelined requests and 100-continue (review findings)", () => {
  it("a request pipelined behind a key change is checked against the new key, a read behind a write sees the write", async () => {
    const own = await startServer();
    const client = new RawClient(own.port);
    try {
      const body = "rd=pipelined-key";
      client.send(
        `PUT /api/v1/apikeys/keys/6 HTTP/1.1\r\n${H}ApiRdKey: rdKey2\r\nApiWrKey: wrKey2\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
          `GET /api/v1/data/time HTTP/1.1\r\n${H}ApiRdKey: rdKey7\r\n\r\n` +
          `GET /api/v1/data/entries/2/pin HTTP/1.1\r\n${H}ApiRdKey: pipelined-key\r\n\r\n` +
          `PUT /api/v1/properties/name HTTP/1.1\r\n${H}${KEYS1}Content-Length: 9\r\n\r\nname=pipe` +
          `GET /api/v1/properties/name HTTP/1.1\r\n${H}${RD1}\r\n`,
      );
      expect((await client.next()).status).toBe(200);
      expectFailure(await client.next(), 3); // the old key died with the answer before it
      expect((await client.next()).text).toBe(ok(true));
      expect((await client.next()).text).toBe(ok("pipe"));
      expect((await client.next()).text).toBe(ok("pipe"));
    } finally {
      client.destroy();
    }
  });

  it("100 Continue is sent only once the keys passed: a wrong key gets its 401 without a 100", async () => {
    const client = new RawClient(ts.port).send(`PUT /api/v1/properties/mqtt/root HTTP/1.1\r\n${H}ApiRdKey: rdKey1\r\nApiWrKey: wrong\r\nExpect: 100-continue\r\nContent-Length: 8\r\n\r\n`);
    try {
      const answer = await client.next();
      expectFailure(answer, 4);
    } finally {
      client.destroy();
    }
  });

  it("an empty segment is malformed (9) also right after the endpoint: /properties// is not /properties", async () => {
    expectFailure(await answeredKeepingAlive(`GET /api/v1/properties// HTTP/1.1\r\n${H}${RD1}\r\n`), 9);
    expect((await answeredKeepingAlive(`GET /api/v1/properties/name/ HTTP/1.1\r\n${H}${RD1}\r\n`)).text).toBe(ok("eNetMini1"));
  });
});

describe("every answer is JSON to a browser too", () => {
  it("carries X-Content-Type-Options: nosniff: a success, a pipeline error, and a parser refusal", async () => {
    const answers = [
      await rawOnce(ts.port, FOLLOW_UP),
      await rawOnce(ts.port, `GET /api/v1/nothing HTTP/1.1\r\n${H}\r\n`),
      await rawOnce(ts.port, `GET /api/v1/device HTTP/1.1\r\n${H}bad header\r\n\r\n`),
    ];
    expect(answers.map((a) => [a.status, a.headers["x-content-type-options"]])).toEqual([
      [200, "nosniff"],
      [404, "nosniff"],
      [400, "nosniff"],
    ]);
  });
});

describe("GET /api/v1/: what a user tries first", () => {
  it("lists every endpoint with whether reading and writing need a key, and nothing else", async () => {
    const answer = await call(ts, "GET", "/api/v1/");
    expect(answer.status).toBe(200);
    const list = JSON.parse(answer.text).data as Array<{ name: string; readKey: boolean; writeKey: boolean | null }>;
    expect(list.map((e) => Object.keys(e))).toEqual(list.map(() => ["name", "readKey", "writeKey"]));
    expect(list.find((e) => e.name === "device")).toEqual({ name: "device", readKey: false, writeKey: null });
    expect(list.find((e) => e.name === "properties")).toEqual({ name: "properties", readKey: true, writeKey: true });
    expect(list.map((e) => e.name).sort()).toEqual([...ts.device.endpoints.keys()].sort());
    const put = await call(ts, "PUT", "/api/v1/", { body: "x=1" });
    expectFailure(put, 5);
    expect(put.headers["allow"]).toBe("GET, HEAD");
  });

  it("follows key changes: an endpoint whose read key is emptied is listed open", async () => {
    const own = await startServer();
    await call(own, "PUT", "/api/v1/apikeys/keys/5", { rd: "rdKey2", wr: "wrKey2", body: "rd=" });
    const list = JSON.parse((await call(own, "GET", "/api/v1/")).text).data as Array<{ name: string; readKey: boolean; writeKey: boolean | null }>;
    expect(list.find((e) => e.name === "process")).toEqual({ name: "process", readKey: false, writeKey: true });
  });
});
