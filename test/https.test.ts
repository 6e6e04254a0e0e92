// HTTPS with --tls-cert and --tls-key: the same API over node:https, checked against a throwaway
// self-signed certificate made here with openssl (skipped where openssl is missing). SIGHUP loads
// a renewed certificate; unusable files stop the start with the file named.

import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as tls from "node:tls";
import { Agent, request } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { killServers, runCli, startCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, ensureBuilt, lacks, ok, startServer, tempDir, HAS_OPENSSL, throwawayCertificate } from "./helpers.ts";


beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});
afterAll(closeAgents);

/** A fresh self-signed certificate for 127.0.0.1 (EC P-256, one day): its PEM files in a temp folder. */

/** The fingerprint of the certificate a TLS server presents. */
function presentedCertificate(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on("error", reject);
  });
}

describe.skipIf(lacks(HAS_OPENSSL))("HTTPS", () => {
  it("answers the same API over TLS, verified against the certificate (library)", async () => {
    const { certFile, keyFile, cert } = await throwawayCertificate();
    const ts = await startServer({ server: { tls: { cert: await readFile(certFile), key: await readFile(keyFile) } } });
    const dispatcher = new Agent({ connect: { ca: cert } });
    try {
      const origin = `https://127.0.0.1:${ts.port}`;
      expect((await call({ origin }, "GET", "/api/v1/properties/name", { rd: "rdKey1", dispatcher })).text).toBe(ok("eNetMini1"));
      const put = await call({ origin }, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: "name=secure", dispatcher });
      expect(put.text).toBe(ok("secure"));
      // Plain HTTP to the TLS port gets a plain answer that says so, and no key is looked at.
      const plain = await request(`http://127.0.0.1:${ts.port}/api/v1/properties/name`, { headers: { ApiRdKey: "rdKey1" } });
      const text = await plain.body.text();
      expect([plain.statusCode, plain.headers["content-type"], text]).toEqual([400, "text/plain; charset=utf-8", "This port speaks HTTPS: use https:// instead of http://.\n"]);
    } finally {
      await dispatcher.close();
    }
  });

  it("serves HTTPS from the bundle with --tls-cert/--tls-key and loads a renewed certificate on SIGHUP", async () => {
    const first = await throwawayCertificate("first");
    const server = await startCli(["--state-dir", await tempDir(), "--tls-cert", first.certFile, "--tls-key", first.keyFile]);
    expect(server.origin).toBe(`https://127.0.0.1:${server.port}`);
    const dispatcher = new Agent({ connect: { ca: first.cert } });
    expect((await call(server, "GET", "/api/v1/device/0/board/pcb/name", { dispatcher })).text).toBe(ok("mkc1601"));
    await dispatcher.close();
    const before = await presentedCertificate(server.port, first.cert);

    const renewed = await throwawayCertificate("renewed");
    await writeFile(first.certFile, renewed.cert);
    await writeFile(first.keyFile, await readFile(renewed.keyFile));
    server.child.kill("SIGHUP");
    await server.waitForLog(/reloaded the TLS certificate/);
    const after = await presentedCertificate(server.port, renewed.cert);
    expect(after).not.toBe(before);
    expect(await server.stop()).toBe(0);
  });

  it("refuses to start on an unusable certificate or key, naming the file", async () => {
    const { certFile, keyFile } = await throwawayCertificate();
    const other = await throwawayCertificate("other");
    const stateDir = await tempDir();
    const mismatch = await runCli(["--port", "0", "--state-dir", stateDir, "--tls-cert", certFile, "--tls-key", other.keyFile]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toContain(`cannot start: certificate ${certFile} with key ${other.keyFile}: `);
    const missing = await runCli(["--port", "0", "--state-dir", stateDir, "--tls-cert", join(stateDir, "none.pem"), "--tls-key", keyFile]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`cannot start: certificate ${join(stateDir, "none.pem")}: cannot be read (ENOENT)`);
    const half = await runCli(["--port", "0", "--state-dir", stateDir, "--tls-cert", certFile]);
    expect(half).toMatchObject({ code: 2, stderr: "apikeyd: --tls-cert and --tls-key go together\nTry --help.\n" });
    // check finds the same problem without starting.
    const checked = await runCli(["check", "--state-dir", stateDir, "--tls-cert", certFile, "--tls-key", other.keyFile]);
    expect(checked.code).toBe(1);
    expect(checked.stdout).toContain(`problem: certificate ${certFile} with key ${other.keyFile}: `);
  });

  it("warns when every user may read the private key (at start, and in check); a private key gets no warning", async () => {
    const { certFile, keyFile } = await throwawayCertificate();
    const warning = `key ${keyFile} is readable by every user (mode 644); chmod o-r it`;
    await chmod(keyFile, 0o644);
    const open = await startCli(["--state-dir", await tempDir(), "--tls-cert", certFile, "--tls-key", keyFile]);
    expect(open.log()).toContain(`WARN  ${warning}\n`);
    const checked = await runCli(["check", "--state-dir", await tempDir(), "--tls-cert", certFile, "--tls-key", keyFile]);
    expect(checked.stdout).toContain(`note: ${warning}\n`);
    await chmod(keyFile, 0o640);
    const closed = await startCli(["--state-dir", await tempDir(), "--tls-cert", certFile, "--tls-key", keyFile]);
    expect(closed.log()).not.toContain("readable by every user");
  });
});
