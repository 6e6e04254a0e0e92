// SIGTERM while a PUT's body is half sent: the server stops accepting, lets that request finish,
// answers 200, keeps the change on disk, and exits 0.

import { readFile } from "node:fs/promises";
import * as net from "node:net";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { killServers, startCli } from "./cli-harness.ts";
import { cleanup, ensureBuilt, ok, tempDir } from "./helpers.ts";

beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});

/** Resolves with everything the socket receives once `pattern` matches it (bounded by the test timeout). */
function received(socket: net.Socket, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      if (pattern.test(text)) {
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
    socket.once("close", () => reject(new Error(`closed before ${pattern}: ${text}`)));
  });
}

describe("SIGTERM", () => {
  it("finishes a PUT whose body is half sent, keeps the change, and exits 0", async () => {
    const stateDir = await tempDir();
    const server = await startCli(["--state-dir", stateDir, "--log-requests"]);
    const body = "name=survived-the-stop";
    const socket = net.connect(server.port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    // 100-continue: the server says when it has the headers, so the request is surely in flight.
    const continued = received(socket, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
    socket.write(
      "PUT /api/v1/properties/name HTTP/1.1\r\nHost: 127.0.0.1\r\nApiRdKey: rdKey1\r\nApiWrKey: wrKey1\r\n" +
        `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
    await continued;
    socket.write(body.slice(0, 8));

    const exited = server.stop("SIGTERM");
    await server.waitForLog(/stopping signal=SIGTERM/);
    // No new connection is accepted any more.
    await expect(
      new Promise((resolve, reject) => net.connect(server.port, "127.0.0.1").once("connect", resolve).once("error", reject)),
    ).rejects.toMatchObject({ code: "ECONNREFUSED" });

    const answer = received(socket, /\r\n\r\n[^]*"data":"survived-the-stop"}$/);
    socket.write(body.slice(8));
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text).toMatch(/\r\nConnection: close\r\n/i);
    expect(text.endsWith(ok("survived-the-stop"))).toBe(true);
    socket.destroy();

    expect(await exited).toBe(0);
    expect(JSON.parse(await readFile(join(stateDir, "properties.json"), "utf8")).name).toBe("survived-the-stop");
    expect(server.log()).toMatch(/REQ {3}127\.0\.0\.1 PUT \/api\/v1\/properties\/name 200 \S+ properties\n[^]*INFO  stopped\n$/);
  });
});
