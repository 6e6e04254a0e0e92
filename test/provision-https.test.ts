// The provisioning tool and HTTPS devices (inventory hosts written https://...): their certificates
// are checked against --ca (Node's own CAs without it), name or IP included, and never switched off;
// a device that fails the check is named with the reason, never receives a byte of a request, and
// the other devices are still done. Throwaway self-signed certificates are made with openssl
// (those tests are skipped where it is missing).

import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import * as tls from "node:tls";
import { Agent } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseInventory } from "../src/provision/inventory.ts";
import { call, cleanup, closeAgents, ensureBuilt, lacks, startServer, tempDir, HAS_OPENSSL, throwawayCertificate } from "./helpers.ts";
import {
  allKeys,
  closedPort,
  expectDeviceHolds,
  FACTORY,
  hostOf,
  inventoryRefusal as refusal,
  readSecrets,
  ROOMY_FLAG,
  ROOMY_THROTTLE,
  runTool,
  startFleet,
  writeInventory,
} from "./provision-harness.ts";

const cleanups: Array<() => Promise<void>> = [];

beforeAll(ensureBuilt);
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
  await cleanup();
});
afterAll(closeAgents);


/** A device over HTTPS: a real server, its https:// origin and its inventory name. */
async function startTlsDevice(certificate: { cert: string; key: string }): Promise<{ ts: Awaited<ReturnType<typeof startServer>>; origin: string; host: string }> {
  const ts = await startServer({ server: { throttle: ROOMY_THROTTLE, tls: certificate } });
  return { ts, origin: `https://127.0.0.1:${ts.port}`, host: `https://127.0.0.1:${ts.port}` };
}

/** A TLS listener that only counts connections and the bytes it receives after the handshake. */
async function countingTlsListener(certificate: { cert: string; key: string }, host: string): Promise<{ port: number; connections: () => number; bytes: () => number }> {
  let connections = 0;
  let bytes = 0;
  const server = tls.createServer(certificate, (socket) => {
    socket.on("data", (chunk: Buffer) => (bytes += chunk.length));
    socket.on("error", () => undefined);
  });
  server.on("connection", () => connections++);
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((done) => server.listen(0, host, done));
  cleanups.push(() => new Promise<void>((done) => server.close(() => done())));
  return { port: (server.address() as AddressInfo).port, connections: () => connections, bytes: () => bytes };
}

describe("inventory: https:// and http:// hosts", () => {
  const factory = { rd: "rdKey2", wr: "wrKey2" };

  it("takes https://HOST[:PORT] (port 443) and http://HOST[:PORT] (port 80), keyed as written", () => {
    expect(parseInventory(JSON.stringify(["https://192.168.15.100", "HTTPS://gw1.local:8443", "https://[fd00::5]", "http://10.0.0.7", "10.0.0.7:8080"]))).toEqual([
      { host: "https://192.168.15.100", scheme: "https", hostname: "192.168.15.100", port: 443, apikeys: factory },
      { host: "HTTPS://gw1.local:8443", scheme: "https", hostname: "gw1.local", port: 8443, apikeys: factory },
      { host: "https://[fd00::5]", scheme: "https", hostname: "fd00::5", port: 443, apikeys: factory },
      { host: "http://10.0.0.7", scheme: "http", hostname: "10.0.0.7", port: 80, apikeys: factory },
      { host: "10.0.0.7:8080", scheme: "http", hostname: "10.0.0.7", port: 8080, apikeys: factory },
    ]);
  });

  it("refuses a path, another scheme or user info, and one port written twice with either scheme", () => {
    for (const host of ["https://10.0.0.1/", "https://", "https://10.0.0.1:", "ftp://10.0.0.1", "https://user@10.0.0.1", "https:10.0.0.1"]) {
      expect(refusal(JSON.stringify([host]))).toBe("entry 0: the host is not HOST[:PORT] or https://HOST[:PORT] (no path)");
    }
    expect(refusal('["https://10.0.0.1:8080", "10.0.0.1:8080"]')).toBe('entry 1: "10.0.0.1:8080" is the same device as entry 0');
    expect(refusal('["https://10.0.0.1", "10.0.0.1:443"]')).toBe('entry 1: "10.0.0.1:443" is the same device as entry 0');
  });
});

describe("--ca", () => {
  it("refuses a file it cannot use before anything is done (exit 2)", async () => {
    const dir = await tempDir();
    const inventory = await writeInventory(dir, [`https://127.0.0.1:${await closedPort()}`]);
    const out = join(dir, "secrets.json");
    const noCertificate = join(dir, "empty.pem");
    await writeFile(noCertificate, "not a certificate\n");
    const damaged = join(dir, "damaged.pem");
    await writeFile(damaged, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");

    const cases: Array<[string, string]> = [
      [join(dir, "missing.pem"), "cannot be read (ENOENT)"],
      [noCertificate, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"],
      [damaged, "certificate 1 cannot be read ("],
    ];
    for (const [file, reason] of cases) {
      const run = await runTool(["--inventory", inventory, "--out", out, "--ca", file], dir);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(`provision: --ca ${file}: ${reason}`);
      expect(run.stdout).toBe("");
    }
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.lock`)).toBe(false);
  });
});

describe.skipIf(lacks(HAS_OPENSSL))("HTTPS devices", () => {
  it("without --ca the HTTPS devices fail with the reason and the plain one is done; with --ca a re-run does them", async () => {
    const dir = await tempDir();
    const [first, second] = await Promise.all([throwawayCertificate("first"), throwawayCertificate("second")]);
    const tlsA = await startTlsDevice(first);
    const tlsB = await startTlsDevice(second);
    const [plain] = await startFleet(1);
    const inventory = await writeInventory(dir, [tlsA.host, { host: tlsB.host, apikeys: FACTORY["apikeys"] }, hostOf(plain!)]);
    const out = join(dir, "secrets.json");
    const caFile = join(dir, "devices.pem");
    await writeFile(caFile, first.cert + second.cert);
    const dispatcher = new Agent({ connect: { ca: [first.cert, second.cert] } });
    cleanups.push(() => dispatcher.close());

    // Node's own CAs do not know the self-signed certificates: no key is sent to those devices.
    const without = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(without.code).toBe(1);
    expect(without.stdout).toContain("3 devices: 1 provisioned now, 0 already provisioned, 2 failed; 7 pairs got new keys.");
    const untrusted = "TLS: its certificate is self-signed and not trusted; give the tool that certificate with --ca FILE (DEPTH_ZERO_SELF_SIGNED_CERT)";
    expect(without.stdout).toContain(`  ${tlsA.host}: ${untrusted}\n`);
    expect(without.stdout).toContain(`  ${tlsB.host}: ${untrusted}\n`);
    let secrets = await readSecrets(out);
    expect(Object.keys(secrets)).toEqual([hostOf(plain!)]);
    await expectDeviceHolds(plain!, secrets[hostOf(plain!)]);
    for (const device of [tlsA, tlsB]) {
      expect((await call(device, "GET", "/api/v1/apikeys/keys/6/rd", { rd: "rdKey2", dispatcher })).json?.data).toBe("rdKey7");
    }

    const withCa = await runTool(["--inventory", inventory, "--out", out, "--ca", caFile, ...ROOMY_FLAG], dir);
    expect(withCa.code).toBe(0);
    expect(withCa.stdout).toContain("3 devices: 2 provisioned now, 1 already provisioned, 0 failed; 14 pairs got new keys.");
    secrets = await readSecrets(out);
    // Keyed by the host as written, scheme included.
    expect(Object.keys(secrets).sort()).toEqual([tlsA.host, tlsB.host, hostOf(plain!)].sort());
    await expectDeviceHolds(tlsA.ts, secrets[tlsA.host], { origin: tlsA.origin, dispatcher });
    await expectDeviceHolds(tlsB.ts, secrets[tlsB.host], { origin: tlsB.origin, dispatcher });
    await expectDeviceHolds(plain!, secrets[hostOf(plain!)]);
    for (const key of allKeys(secrets)) expect(without.stdout + without.stderr + withCa.stdout + withCa.stderr).not.toContain(key);
  });

  it("refuses a trusted certificate for another address, an untrusted one and a plain port before sending a byte, even with NODE_TLS_REJECT_UNAUTHORIZED=0", async () => {
    const dir = await tempDir();
    const [trusted, stranger] = await Promise.all([throwawayCertificate("trusted"), throwawayCertificate("stranger")]);
    // Same certificate, trusted through --ca, but the device is reached at 127.0.0.2: a swapped device.
    const otherAddress = await countingTlsListener(trusted, "127.0.0.2");
    const notInCa = await countingTlsListener(stranger, "127.0.0.1");
    const [plain] = await startFleet(1);
    const caFile = join(dir, "devices.pem");
    await writeFile(caFile, trusted.cert);
    const wrongName = `https://127.0.0.2:${otherAddress.port}`;
    const selfSigned = `https://127.0.0.1:${notInCa.port}`;
    const plainAsHttps = `https://${hostOf(plain!)}`;
    const inventory = await writeInventory(dir, [wrongName, selfSigned, plainAsHttps]);
    const out = join(dir, "secrets.json");

    const run = await runTool(["--inventory", inventory, "--out", out, "--ca", caFile, ...ROOMY_FLAG], dir, { NODE_TLS_REJECT_UNAUTHORIZED: "0" });
    expect(run.code).toBe(1);
    expect(run.stdout).toContain("3 devices: 0 provisioned now, 0 already provisioned, 3 failed; 0 pairs got new keys.");
    expect(run.stdout).toContain(
      `  ${wrongName}: TLS: its certificate is not for this address (IP: 127.0.0.2 is not in the cert's list: 127.0.0.1); ` +
        "the certificate needs a subjectAltName with the address as written in the inventory (ERR_TLS_CERT_ALTNAME_INVALID)\n",
    );
    expect(run.stdout).toContain(`  ${selfSigned}: TLS: its certificate is self-signed and not trusted; it is not in the --ca file (DEPTH_ZERO_SELF_SIGNED_CERT)\n`);
    expect(run.stdout).toMatch(new RegExp(`  ${plainAsHttps}: TLS: the device did not answer in TLS \\([^)]*wrong version number\\); if it serves plain HTTP, write it without https:// \\(EPROTO\\)\\n`));
    // The tool connected, and the handshake ended it: not one byte of a request, so no key, got through.
    for (const listener of [otherAddress, notInCa]) {
      expect(listener.connections()).toBeGreaterThan(0);
      expect(listener.bytes()).toBe(0);
    }
    expect((await call(plain!, "GET", "/api/v1/apikeys/keys/6/rd", { rd: "rdKey2" })).json?.data).toBe("rdKey7");
  });

  it("names a TLS port written without https://, and warns that --ca then serves nothing", async () => {
    const dir = await tempDir();
    const certificate = await throwawayCertificate("device");
    const device = await startTlsDevice(certificate);
    const inventory = await writeInventory(dir, [hostOf(device.ts)]);
    const caFile = join(dir, "device.pem");
    await writeFile(caFile, certificate.cert);
    const run = await runTool(["--inventory", inventory, "--out", join(dir, "secrets.json"), "--ca", caFile, ...ROOMY_FLAG], dir);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("warning: --ca is given, but no device in the inventory is written https://...; all are reached over plain HTTP\n");
    // The device says so in plain text (a bare TLS server would reset the connection: see device-client.ts).
    expect(run.stdout).toContain(`  ${hostOf(device.ts)}: the device serves HTTPS on that port: write it https://HOST:PORT in the inventory\n`);
  });
});
