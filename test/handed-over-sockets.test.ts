// Requests node hands over as raw sockets: CONNECT and Upgrade. Each gets its envelope and then a
// full close, so that held sockets cannot fill the connection cap (a lock-out of every client) or
// keep a stop waiting; a request pipelined behind an Upgrade is not silently swallowed on an open
// connection. And requests node's parser refuses leave a log line.

import { connect, type Socket } from "node:net";
import * as tls from "node:tls";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { stopServer } from "../src/http/server.ts";
import { call, cleanup, closeAgents, HAS_OPENSSL, lacks, ok, startServer, throwawayCertificate, type TestServer } from "./helpers.ts";

const held: Socket[] = [];
afterEach(async () => {
  for (const socket of held.splice(0)) socket.destroy();
  await cleanup();
});
afterAll(closeAgents);

const CONNECT = "CONNECT /api/v1/device HTTP/1.1\r\nHost: device\r\n\r\n";
const NAME = ok("eNetMini1");

/**
 * Sends `bytes` on a socket that keeps its own side open after the server's FIN (as an attacker
 * would), and resolves with what it read once the answer is complete.
 */
function holdAfterAnswer(open: () => Socket, bytes: string): Promise<{ socket: Socket; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = open();
    held.push(socket);
    let text = "";
    socket.on("error", () => undefined);
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('"data":null}')) resolve({ socket, text });
    });
    socket.once("close", () => reject(new Error(`closed before the answer: ${JSON.stringify(text)}`)));
    socket.write(bytes);
  });
}

const plain = (ts: TestServer) => () => connect({ port: ts.port, host: "127.0.0.1", allowHalfOpen: true });


describe("CONNECT", () => {
  it("256 held CONNECT sockets (the cap) do not lock out the 257th client", async () => {
    const ts = await startServer();
    const answers = await Promise.all(Array.from({ length: 256 }, () => holdAfterAnswer(plain(ts), CONNECT)));
    for (const { text } of answers) expect(text).toMatch(/^HTTP\/1\.1 405 [^]*\r\nConnection: close\r\n/);
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(NAME);
  });

  it.skipIf(lacks(HAS_OPENSSL))("over HTTPS too", async () => {
    const ts = await startServer({ server: { maxConnections: 16, tls: await throwawayCertificate() } });
    // allowHalfOpen (untyped for tls.connect, passed on to the TLSSocket): the client keeps its side open.
    const open = (): Socket => tls.connect({ port: ts.port, host: "127.0.0.1", rejectUnauthorized: false, allowHalfOpen: true } as tls.ConnectionOptions);
    await Promise.all(Array.from({ length: 16 }, () => holdAfterAnswer(open, CONNECT)));
    const client = open();
    held.push(client);
    let text = "";
    client.on("data", (chunk: Buffer) => (text += chunk.toString()));
    const served = new Promise((resolve, reject) => {
      client.on("data", () => text.endsWith(NAME) && resolve(undefined));
      client.once("close", () => reject(new Error(`closed: ${JSON.stringify(text)}`)));
    });
    client.write("GET /api/v1/properties/name HTTP/1.1\r\nHost: device\r\nApiRdKey: rdKey1\r\n\r\n");
    await served;
  });

  it("a stop with a CONNECT socket held completes at once", async () => {
    const ts = await startServer();
    await holdAfterAnswer(plain(ts), CONNECT);
    const started = performance.now();
    await stopServer(ts.server, 5_000);
    expect(performance.now() - started).toBeLessThan(2_000); // the grace is 5 s: nothing waited for it
  });
});

describe("Upgrade", () => {
  it("is served as a plain request and the connection closed, so a pipelined request behind it is not swallowed unseen", async () => {
    const ts = await startServer();
    const socket = plain(ts)();
    held.push(socket);
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
    const ended = new Promise((resolve) => socket.once("end", resolve));
    socket.write(
      "GET /api/v1/properties/name HTTP/1.1\r\nHost: device\r\nApiRdKey: rdKey1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" +
        "GET /api/v1/device/0/address HTTP/1.1\r\nHost: device\r\n\r\n",
    );
    await ended;
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\nConnection: close\r\n/);
    expect(text.endsWith(NAME)).toBe(true);
    // The server closed the connection: the client knows its second request went unanswered.
    expect(text.match(/HTTP\/1\.1/g)).toHaveLength(1);
  });
});

describe("requests node's parser refuses", () => {
  it("leave a log line with the parser's reason, never the bytes", async () => {
    const lines: string[] = [];
    const ts = await startServer({ server: { log: { log: (level, message, fields) => void lines.push(`${level} ${message} ${JSON.stringify(fields)}`) } } });
    const socket = plain(ts)();
    held.push(socket);
    socket.on("error", () => undefined);
    socket.resume();
    const ended = new Promise((resolve) => socket.once("end", resolve));
    socket.write("GET /api/v1/device HTTP/1.1\r\nHost: device\r\nsecret-bytes here\r\n\r\n");
    await ended;
    const refused = lines.filter((l) => l.startsWith("warn request refused by the HTTP parser"));
    expect(refused).toHaveLength(1);
    expect(refused[0]).toContain('"event":"parser-refused"');
    expect(refused[0]).toContain('"reason":"HPE_INVALID_HEADER_TOKEN"');
    expect(refused[0]).not.toContain("secret-bytes");
  });
});
