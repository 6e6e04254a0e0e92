// Keys (docs/api.md §3): who may read and write, empty keys, header names, and key changes that take
// effect for the very next request on connections that are already open.

import { afterAll, afterEach, describe, expect, it } from "vitest";
import { Client } from "undici";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { call, cleanup, closeAgents, failure, ok, startServer, type TestServer, withoutDetail } from "./helpers.ts";
import { RawClient } from "./raw-client.ts";

afterEach(cleanup);
afterAll(closeAgents);

const READ_DENIED = failure(3, "JSON_ERROR_READ_DENIED");
const WRITE_DENIED = failure(4, "JSON_ERROR_WRITE_DENIED");
const MASTER = { rd: "rdKey2", wr: "wrKey2" };

/** A server whose throttle blocks after one wrong key: proves that ignored headers are not counted. */
const strictServer = (): Promise<TestServer> => startServer({ server: { throttle: { ...DEFAULT_THROTTLE, maxFailures: 1 } } });

/** Counts the TCP connections a server accepts from now on. */
function countConnections(ts: TestServer): () => number {
  let n = 0;
  ts.server.on("connection", () => n++);
  return () => n;
}

describe("reading and writing need the endpoint's own keys", () => {
  it("reading needs ApiRdKey equal to rd; writing needs both keys", async () => {
    const ts = await startServer();
    expect((await call(ts, "GET", "/api/v1/httpro/name", { rd: "rdKey3" })).text).toBe(ok("user_ro"));
    expect(withoutDetail((await call(ts, "GET", "/api/v1/httpro/name", { rd: "rdKey4" })).text)).toBe(READ_DENIED);
    expect(withoutDetail((await call(ts, "PUT", "/api/v1/httpro", { wr: "wrKey3", body: "name=x" })).text)).toBe(READ_DENIED);
    expect(withoutDetail((await call(ts, "PUT", "/api/v1/httpro", { rd: "rdKey3", body: "name=x" })).text)).toBe(WRITE_DENIED);
    expect(withoutDetail((await call(ts, "PUT", "/api/v1/httpro", { rd: "rdKey3", wr: "wrKey4", body: "name=x" })).text)).toBe(WRITE_DENIED);
    expect((await call(ts, "PUT", "/api/v1/httpro/name", { rd: "rdKey3", wr: "wrKey3", body: "name=x" })).text).toBe(ok("x"));
  });

  it("key values are compared exactly", async () => {
    const ts = await startServer();
    for (const rd of ["RDKEY3", "rdkey3", "rdKey", "rdKey33", "rdKey4"]) {
      expect([rd, withoutDetail((await call(ts, "GET", "/api/v1/httpro", { rd })).text)]).toEqual([rd, READ_DENIED]);
    }
  });

  it("header names are case-insensitive", async () => {
    const ts = await startServer();
    for (const name of ["apirdkey", "APIRDKEY", "aPiRdKeY"]) {
      expect((await call(ts, "GET", "/api/v1/properties/name", { headers: { [name]: "rdKey1" } })).text).toBe(ok("eNetMini1"));
    }
    const a = await call(ts, "PUT", "/api/v1/properties/name", { headers: { APIRDKEY: "rdKey1", apiwrkey: "wrKey1" }, body: "name=x" });
    expect(a.text).toBe(ok("x"));
  });

  it("the apikeys read key reveals every key, write keys included (the master key)", async () => {
    const ts = await startServer();
    const keys = (await call(ts, "GET", "/api/v1/apikeys/keys", { rd: "rdKey2" })).json?.data as Array<{ name: string; wr: string }>;
    expect(keys.map((p) => `${p.name}:${p.wr}`)).toEqual([
      "properties:wrKey1",
      "apikeys:wrKey2",
      "httpro:wrKey3",
      "httprw:wrKey4",
      "httpsu:wrKey5",
      "process:wrKey6",
      "data:wrKey7",
    ]);
  });

  it("a key of any printable ASCII character but space can be set and then presented", async () => {
    const ts = await startServer();
    const key = "!\"#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~";
    const form = `rd=${encodeURIComponent(key)}`; // what curl --data-urlencode sends
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/3/rd", { ...MASTER, body: form })).text).toBe(ok(key));
    expect((await call(ts, "GET", "/api/v1/httprw/name", { rd: key })).text).toBe(ok("user_rw"));
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/3", { ...MASTER, body: { wr: "x".repeat(128) } })).status).toBe(200);
    expect((await call(ts, "PUT", "/api/v1/httprw/pass", { rd: key, wr: "x".repeat(128), body: "pass=p" })).text).toBe(ok("p"));
  });
});

describe("empty keys", () => {
  it("rd empty: anyone reads with no header; a wrong header sent is ignored (and not counted)", async () => {
    const ts = await strictServer();
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/0/rd", { ...MASTER, body: "rd=" })).text).toBe(ok(""));
    const from = { localAddress: "127.0.0.21" };
    expect((await call(ts, "GET", "/api/v1/properties/name", from)).text).toBe(ok("eNetMini1"));
    for (const rd of ["wrong", "rdKey1", "also wrong"]) {
      expect((await call(ts, "GET", "/api/v1/properties/name", { ...from, rd })).text).toBe(ok("eNetMini1"));
    }
    // An address blocked for a wrong key elsewhere still reads the open endpoint (docs/api.md §5).
    expect(withoutDetail((await call(ts, "GET", "/api/v1/httpro", { ...from, rd: "guess" })).text)).toBe(READ_DENIED);
    expect((await call(ts, "GET", "/api/v1/httpro", { ...from, rd: "rdKey3" })).json?.meta.error).toBe(12);
    expect((await call(ts, "GET", "/api/v1/properties/name", from)).text).toBe(ok("eNetMini1"));
    // Writing still needs the write key; the read side stays open.
    expect(withoutDetail((await call(ts, "PUT", "/api/v1/properties/name", { localAddress: "127.0.0.22", body: "name=x" })).text)).toBe(WRITE_DENIED);
    expect((await call(ts, "PUT", "/api/v1/properties/name", { localAddress: "127.0.0.22", wr: "wrKey1", body: "name=x" })).text).toBe(ok("x"));
  });

  it("rd and wr empty: anyone reads and writes with no header; headers sent are ignored", async () => {
    const ts = await strictServer();
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/2", { ...MASTER, body: "rd=&wr=" })).status).toBe(200);
    const from = { localAddress: "127.0.0.23" };
    expect((await call(ts, "PUT", "/api/v1/httpro/name", { ...from, body: "name=a" })).text).toBe(ok("a"));
    expect((await call(ts, "PUT", "/api/v1/httpro/name", { ...from, rd: "x", wr: "y", body: "name=b" })).text).toBe(ok("b"));
    expect((await call(ts, "PUT", "/api/v1/httpro/name", { ...from, rd: "x", wr: "y", body: "name=c" })).text).toBe(ok("c"));
    expect((await call(ts, "GET", "/api/v1/httpro/name", from)).text).toBe(ok("c"));
    // Other endpoints keep their keys.
    expect(withoutDetail((await call(ts, "GET", "/api/v1/httprw/name", { localAddress: "127.0.0.24" })).text)).toBe(READ_DENIED);
  });

  it("wr empty alone: writing needs only the read key", async () => {
    const ts = await startServer();
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/4/wr", { ...MASTER, body: "wr=" })).text).toBe(ok(""));
    expect(withoutDetail((await call(ts, "PUT", "/api/v1/httpsu/name", { body: "name=x" })).text)).toBe(READ_DENIED);
    expect((await call(ts, "PUT", "/api/v1/httpsu/name", { rd: "rdKey5", body: "name=x" })).text).toBe(ok("x"));
  });
});

describe("device", () => {
  it("is always open, whatever keys are sent, and never counts them", async () => {
    const ts = await strictServer();
    const from = { localAddress: "127.0.0.25" };
    const expected = (await call(ts, "GET", "/api/v1/device", from)).text;
    expect(expected).toBe(ok(JSON.parse((await call(ts, "GET", "/api/v1/device")).text).data));
    for (let i = 0; i < 3; i++) {
      expect((await call(ts, "GET", "/api/v1/device", { ...from, rd: `guess${i}`, wr: "guess" })).text).toBe(expected);
    }
    expect((await call(ts, "GET", "/api/v1/properties/name", { ...from, rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
  });

  it("is read-only: no PUT, even with every key", async () => {
    const ts = await startServer();
    const a = await call(ts, "PUT", "/api/v1/device/0", { ...MASTER, body: "address=x" });
    expect(withoutDetail(a.text)).toBe(failure(5, "JSON_ERROR_METHOD_NOT_ALLOWED"));
    expect(a.headers["allow"]).toBe("GET, HEAD");
  });
});

describe("a key change takes effect for the very next request", () => {
  it("on the same keep-alive connection, including a change of the apikeys pair itself", async () => {
    const ts = await startServer();
    const connections = countConnections(ts);
    const client = new Client(ts.origin);
    try {
      const on = { dispatcher: client };
      expect((await call(ts, "GET", "/api/v1/properties/name", { ...on, rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
      expect((await call(ts, "PUT", "/api/v1/apikeys/keys/0/rd", { ...on, ...MASTER, body: "rd=new1" })).text).toBe(ok("new1"));
      expect(withoutDetail((await call(ts, "GET", "/api/v1/properties/name", { ...on, rd: "rdKey1" })).text)).toBe(READ_DENIED);
      expect((await call(ts, "GET", "/api/v1/properties/name", { ...on, rd: "new1" })).text).toBe(ok("eNetMini1"));

      // The master pair changes itself: the answer is the last thing the old keys get.
      const changed = await call(ts, "PUT", "/api/v1/apikeys/keys/1", { ...on, ...MASTER, body: "rd=master2&wr=wmaster2" });
      expect(changed.json?.data).toMatchObject({ name: "apikeys", rd: "master2", wr: "wmaster2" });
      expect(withoutDetail((await call(ts, "GET", "/api/v1/apikeys/keys/1/name", { ...on, rd: "rdKey2" })).text)).toBe(READ_DENIED);
      expect((await call(ts, "PUT", "/api/v1/apikeys/keys/0/rd", { ...on, rd: "master2", wr: "wmaster2", body: "rd=new2" })).text).toBe(ok("new2"));
      expect((await call(ts, "GET", "/api/v1/properties/name", { ...on, rd: "new2" })).text).toBe(ok("eNetMini1"));
      expect(connections()).toBe(1);
      // Last, since a refused PUT's unread body closes the connection.
      expect(withoutDetail((await call(ts, "PUT", "/api/v1/apikeys/keys/0/rd", { ...on, rd: "master2", wr: "wrKey2", body: "rd=x" })).text)).toBe(WRITE_DENIED);
    } finally {
      await client.close();
    }
  });

  it("on every other connection already open", async () => {
    const ts = await startServer();
    const connections = countConnections(ts);
    const reader = new Client(ts.origin);
    const writer = new Client(ts.origin);
    try {
      expect((await call(ts, "GET", "/api/v1/process/name", { dispatcher: reader, rd: "rdKey6" })).text).toBe(ok("example"));
      expect((await call(ts, "PUT", "/api/v1/apikeys/keys/5", { dispatcher: writer, ...MASTER, body: "rd=rotated" })).status).toBe(200);
      expect(withoutDetail((await call(ts, "GET", "/api/v1/process/name", { dispatcher: reader, rd: "rdKey6" })).text)).toBe(READ_DENIED);
      expect((await call(ts, "GET", "/api/v1/process/name", { dispatcher: reader, rd: "rotated" })).text).toBe(ok("example"));
      expect(connections()).toBe(2);
    } finally {
      await Promise.all([reader.close(), writer.close()]);
    }
  });
});

describe("a PUT whose body arrives after its keys changed", () => {
  // The keys are checked when the headers arrive, and again once the body is in: a client that
  // starts a PUT, is revoked, then finishes the body must not undo the revocation.
  const partial = (path: string, rd: string, wr: string, body: string): string =>
    `PUT ${path} HTTP/1.1\r\nHost: device\r\nApiRdKey: ${rd}\r\nApiWrKey: ${wr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 3)}`;

  it("on the apikeys pair: the rotation stands, the late PUT is refused (3)", async () => {
    const ts = await startServer();
    const arrived = new Promise((resolve) => ts.server.once("request", resolve));
    const late = new RawClient(ts.port).send(partial("/api/v1/apikeys/keys/1", "rdKey2", "wrKey2", "rd=revoked-holder-key"));
    await arrived; // the headers are in (and passed), the body is not
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/1", { rd: "rdKey2", wr: "wrKey2", body: "rd=admin-rd-key&wr=admin-wr-key" })).status).toBe(200);
    late.send("revoked-holder-key");
    const answer = await late.next();
    late.destroy();
    expect(JSON.parse(answer.text).meta.error).toBe(3);
    expect(JSON.parse((await call(ts, "GET", "/api/v1/apikeys/keys/1/rd", { rd: "admin-rd-key" })).text).data).toBe("admin-rd-key");
  });

  it("on another endpoint: refused (3) once its pair was rotated, and nothing changed", async () => {
    const ts = await startServer();
    const arrived = new Promise((resolve) => ts.server.once("request", resolve));
    const late = new RawClient(ts.port).send(partial("/api/v1/properties/name", "rdKey1", "wrKey1", "name=late"));
    await arrived;
    expect((await call(ts, "PUT", "/api/v1/apikeys/keys/0", { rd: "rdKey2", wr: "wrKey2", body: "rd=new-props-rd&wr=new-props-wr" })).status).toBe(200);
    late.send("e=late");
    const answer = await late.next();
    late.destroy();
    expect(JSON.parse(answer.text).meta.error).toBe(3);
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "new-props-rd" })).text).toBe(ok("eNetMini1"));
  });
});
