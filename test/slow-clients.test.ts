// Slow and idle clients: floods of sockets that never send a byte, slowloris senders, keep-alive
// sockets left idle and clients that never read their answers cannot keep a real client out.
// Nothing here measures time: each test holds the attackers open and shows a real client served
// (or waits, bounded, for the server to close them).

import { connect, type Socket } from "node:net";
import * as tls from "node:tls";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { call, cleanup, closeAgents, HAS_OPENSSL, lacks, ok, startServer, throwawayCertificate, until, type TestServer } from "./helpers.ts";
import { RawClient } from "./raw-client.ts";

const attackers: Socket[] = [];
afterEach(async () => {
  for (const socket of attackers.splice(0)) socket.destroy();
  await cleanup();
});
afterAll(closeAgents);

const ADDRESS = ok("004082ABCDEF");


/** Opens `n` connections that never send a byte; resolves when all are connected. */
async function idleSockets(port: number, n: number): Promise<Socket[]> {
  const sockets = await Promise.all(
    Array.from({ length: n }, () => new Promise<Socket>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => resolve(socket));
      socket.on("error", () => undefined);
      attackers.push(socket);
    })),
  );
  return sockets;
}

/** A slowloris: a request line, then one more header line every 100 ms, never the end of the headers. */
function slowloris(port: number): Socket {
  const socket = connect(port, "127.0.0.1");
  socket.on("error", () => undefined);
  attackers.push(socket);
  socket.write("GET /api/v1/device HTTP/1.1\r\nHost: device\r\n");
  let n = 0;
  const timer = setInterval(() => {
    if (socket.destroyed) clearInterval(timer);
    else socket.write(`X-Drip-${n++}: a\r\n`);
  }, 100);
  socket.on("close", () => clearInterval(timer));
  return socket;
}

/** A keep-alive connection that asked one question, then sits idle. */
async function idleKeepAlive(port: number): Promise<RawClient> {
  const client = new RawClient(port).send("GET /api/v1/device/0/address HTTP/1.1\r\nHost: device\r\n\r\n");
  attackers.push(client.socket);
  expect((await client.next()).text).toBe(ADDRESS);
  return client;
}

/** Server-side sockets in the order they were accepted. */
function acceptedSockets(ts: TestServer): Socket[] {
  const sockets: Socket[] = [];
  ts.server.on("connection", (socket: Socket) => sockets.push(socket));
  return sockets;
}

const isClosed = (socket: Socket): boolean => socket.destroyed || socket.closed;

describe("with the default connection cap (256)", () => {
  it("a real client is served at once while 300 silent sockets, slowloris senders and idle keep-alives are held open", async () => {
    // Timeouts far away, so that every attacker is provably still there when the client is served.
    const ts = await startServer({ server: { headersTimeoutMs: 60_000, requestTimeoutMs: 120_000, keepAliveTimeoutMs: 60_000 } });
    await idleSockets(ts.port, 300);
    const drippers = Array.from({ length: 5 }, () => slowloris(ts.port));
    const keepAlives = await Promise.all(Array.from({ length: 5 }, () => idleKeepAlive(ts.port)));
    // Past the cap, the oldest idle connection makes room for a newcomer; node's own
    // maxConnections would refuse everyone until the flood timed out.
    expect((await call(ts, "GET", "/api/v1/device/0/address")).text).toBe(ADDRESS);
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
    expect((await call(ts, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: "name=served" })).text).toBe(ok("served"));
    const open = await new Promise<number>((resolve, reject) => ts.server.getConnections((error, n) => (error ? reject(error) : resolve(n))));
    expect(open).toBeLessThanOrEqual(256);
    expect([...drippers, ...keepAlives.map((k) => k.socket)].filter(isClosed)).toEqual([]);
  });
});

describe("with short timeouts", () => {
  it("closes silent, slowloris and idle keep-alive sockets once they time out, serving others meanwhile", async () => {
    const ts = await startServer({ server: { headersTimeoutMs: 500, requestTimeoutMs: 1_000, keepAliveTimeoutMs: 500 } });
    const silent = await idleSockets(ts.port, 20);
    const drippers = Array.from({ length: 5 }, () => slowloris(ts.port));
    const keepAlives = await Promise.all(Array.from({ length: 5 }, () => idleKeepAlive(ts.port)));
    expect((await call(ts, "GET", "/api/v1/device/0/address")).text).toBe(ADDRESS);
    await until("silent and slowloris sockets closed", () => [...silent, ...drippers].every(isClosed));
    await Promise.all(keepAlives.map((client) => client.closed()));
    expect((await call(ts, "GET", "/api/v1/device/0/address")).text).toBe(ADDRESS);
  });

  it("cuts clients that send requests but never read the answers, which would otherwise stay busy for ever", async () => {
    const ts = await startServer({ server: { maxConnections: 4, headersTimeoutMs: 1_000, requestTimeoutMs: 1_000, keepAliveTimeoutMs: 1_000 } });
    const accepted = acceptedSockets(ts);
    const readers = await idleSockets(ts.port, 4);
    await until("4 connections accepted", () => accepted.length === 4);
    // Whole requests in bursts, so that the server never holds half a request (which the header
    // timeout would cut): only the answers pile up, unread, until the server's buffers are full.
    const burst = "GET /api/v1/device HTTP/1.1\r\nHost: device\r\n\r\n".repeat(100);
    for (const reader of readers) reader.pause();
    for (let round = 0; round < 400 && !accepted.every((s) => s.writableLength > 0 || isClosed(s)); round++) {
      for (const reader of readers) reader.write(burst);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(accepted.every((s) => s.writableLength > 0 || isClosed(s))).toBe(true);

    // All 4 slots are taken by connections busy answering; a real client gets in once they are cut.
    let answer: string | undefined;
    for (let attempt = 0; attempt < 60 && answer === undefined; attempt++) {
      const client = new RawClient(ts.port).send("GET /api/v1/device/0/address HTTP/1.1\r\nHost: device\r\n\r\n");
      answer = await client.next().then((a) => a.text, () => undefined);
      client.destroy();
      if (answer === undefined) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(answer).toBe(ADDRESS);
    await until("the non-reading connections cut", () => accepted.slice(0, 4).every(isClosed));
  });

  it("spares a client that reads its answers late but keeps reading, however long its backlog lasts", async () => {
    const ts = await startServer({ server: { headersTimeoutMs: 1_000, requestTimeoutMs: 1_000, keepAliveTimeoutMs: 1_000 } });
    const accepted = acceptedSockets(ts);
    const [reader] = (await idleSockets(ts.port, 1)) as [Socket];
    await until("the connection accepted", () => accepted.length === 1);
    const served = accepted[0] as Socket;
    reader.pause();
    const burst = "GET /api/v1/device HTTP/1.1\r\nHost: device\r\n\r\n".repeat(100);
    for (let round = 0; round < 400 && served.writableLength === 0; round++) {
      reader.write(burst);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(served.writableLength).toBeGreaterThan(0);
    // Then for 4 s, four times the request timeout: every 200 ms more requests, and 512 KiB of answers
    // read: enough to free the kernel's buffers in between (a few MiB on loopback), so that the
    // server sees its answers leave, but less than comes, so that a backlog stays all along.
    const more = burst.repeat(20);
    let budget = 0;
    reader.on("data", (chunk: Buffer) => {
      budget -= chunk.length;
      if (budget <= 0) reader.pause();
    });
    let backlogged = 0;
    for (let tick = 0; tick < 20; tick++) {
      reader.write(more);
      budget = 512 * 1024;
      reader.resume();
      await new Promise((resolve) => setTimeout(resolve, 200));
      if (served.writableLength > 0) backlogged++;
      expect(isClosed(served)).toBe(false);
    }
    // The server had answers waiting all along (or the test would show nothing).
    expect(backlogged).toBeGreaterThan(15);
  });
});

describe("a request in progress is never cut to make room", () => {
  it("a PUT whose body is still coming survives a flood of new connections", async () => {
    const ts = await startServer({ server: { maxConnections: 8 } });
    const dispatched = new Promise((resolve) => ts.server.once("request", resolve));
    const put = new RawClient(ts.port).send("PUT /api/v1/properties/name HTTP/1.1\r\nHost: device\r\nApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\nContent-Length: 10\r\n\r\nname=");
    await dispatched;
    await idleSockets(ts.port, 50);
    put.send("kept!");
    expect((await put.next()).text).toBe(ok("kept!"));
    put.destroy();
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("kept!"));
  });

  it.skipIf(lacks(HAS_OPENSSL))("also over TLS, where the busy connection is a TLSSocket around the counted TCP socket", async () => {
    const ts = await startServer({ server: { maxConnections: 8, tls: await throwawayCertificate() } });
    const dispatched = new Promise((resolve) => ts.server.once("request", resolve));
    const put = tls.connect({ port: ts.port, host: "127.0.0.1", rejectUnauthorized: false });
    attackers.push(put);
    let received = "";
    put.on("data", (chunk: Buffer) => (received += chunk.toString()));
    put.on("error", () => undefined);
    put.write("PUT /api/v1/properties/name HTTP/1.1\r\nHost: device\r\nApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\nContent-Length: 10\r\n\r\nname=");
    await dispatched;
    await idleSockets(ts.port, 50);
    put.write("tls-k");
    await until("the PUT answered", () => received.endsWith(ok("tls-k")) || put.destroyed);
    expect(received.endsWith(ok("tls-k"))).toBe(true);
  });
});
