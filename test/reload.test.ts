// SIGHUP reloads the state folder: a change made on disk while the server runs is served at once;
// a broken folder is refused with the reason in the log, and the old state keeps being served;
// a reload never loses a PUT that was answered, whatever the interleaving.

import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { fingerprint } from "../src/access/keys.ts";
import { loadFingerprintSecret } from "../src/access/fingerprint-secret.ts";
import { ReloadError } from "../src/state/device.ts";
import { killServers, startCli } from "./cli-harness.ts";
import { call, cleanup, closeAgents, ensureBuilt, failure, ok, startServer, tempDir, withoutDetail } from "./helpers.ts";

beforeAll(ensureBuilt);
afterEach(async () => {
  killServers();
  await cleanup();
});
afterAll(closeAgents);

/** Rewrites one state file by hand, as a technician with an editor would. */
async function edit(stateDir: string, file: string, change: (doc: Record<string, any>) => void): Promise<void> {
  const path = join(stateDir, file);
  const doc = JSON.parse(await readFile(path, "utf8")) as Record<string, any>;
  change(doc);
  await writeFile(path, JSON.stringify(doc, null, 2) + "\n");
}

describe("SIGHUP", () => {
  it("serves a change made on disk while the server runs, and audits the key change", async () => {
    const stateDir = await tempDir();
    const server = await startCli(["--state-dir", stateDir]);
    expect((await call(server, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));

    await edit(stateDir, "apikeys.json", (doc) => (doc["keys"][0]["rd"] = "handEdited"));
    await edit(stateDir, "properties.json", (doc) => (doc["name"] = "renamed"));
    // Not yet: the server serves what it loaded until told.
    expect((await call(server, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
    server.child.kill("SIGHUP");
    await server.waitForLog(/reloaded the state folder changed=apikeys,properties\n/);

    expect((await call(server, "GET", "/api/v1/properties/name", { rd: "handEdited" })).text).toBe(ok("renamed"));
    expect(withoutDetail((await call(server, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text)).toBe(failure(3, "JSON_ERROR_READ_DENIED"));
    expect(server.log()).toContain(`key changed event=key-changed source=reload pair=properties side=rd fingerprint=${fingerprint("handEdited", await loadFingerprintSecret(stateDir))}\n`);
    expect(server.log()).not.toContain("handEdited");
    expect(await server.stop()).toBe(0);
  });

  it("reports only the documents whose content changed: a file saved in another layout has not", async () => {
    const ts = await startServer();
    const path = join(ts.stateDir, "properties.json");
    await writeFile(path, JSON.stringify(JSON.parse(await readFile(path, "utf8")))); // compact, same content
    expect(await ts.device.reload()).toEqual([]);
    await edit(ts.stateDir, "process.json", (doc) => (doc["name"] = "renamed"));
    expect(await ts.device.reload()).toEqual(["process"]);
    expect(await ts.device.reload()).toEqual([]);
  });

  it("refuses a broken folder with the reason, keeps serving the old state, and takes the fix", async () => {
    const stateDir = await tempDir();
    const server = await startCli(["--state-dir", stateDir]);
    await edit(stateDir, "apikeys.json", (doc) => (doc["keys"][0]["rd"] = "never served"));
    await writeFile(join(stateDir, "process.json"), '{"name": ');
    server.child.kill("SIGHUP");
    await server.waitForLog(/still serving the state loaded before/);
    expect(server.log()).toContain(`ERROR reload refused: ${stateDir}/process.json: not valid JSON`);
    expect(server.log()).toContain(`ERROR reload refused: ${stateDir}/apikeys.json: /keys/0/rd: not a valid key`);
    expect((await call(server, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).text).toBe(ok("eNetMini1"));
    expect((await call(server, "GET", "/api/v1/process/name", { rd: "rdKey6" })).text).toBe(ok("example"));

    await edit(stateDir, "apikeys.json", (doc) => (doc["keys"][0]["rd"] = "fixed"));
    await writeFile(join(stateDir, "process.json"), await readFile(join(__dirname, "..", "device-config", "process.json"), "utf8"));
    server.child.kill("SIGHUP");
    await server.waitForLog(/reloaded the state folder changed=apikeys\n/);
    expect((await call(server, "GET", "/api/v1/properties/name", { rd: "fixed" })).text).toBe(ok("eNetMini1"));
    expect(await server.stop()).toBe(0);
  });
});

describe("Device.reload", () => {
  it("keeps every answered PUT when reloads and writes interleave", async () => {
    const ts = await startServer();
    const rounds = 20;
    for (let i = 0; i < rounds; i++) {
      const [put, changed] = await Promise.all([
        call(ts, "PUT", "/api/v1/properties/name", { rd: "rdKey1", wr: "wrKey1", body: `name=n${i}` }),
        ts.device.reload(),
        call(ts, "PUT", "/api/v1/properties/mqtt", { rd: "rdKey1", wr: "wrKey1", body: `port=${1000 + i}` }),
      ]);
      expect(put.text).toBe(ok(`n${i}`));
      expect(changed).toEqual([]); // nothing changed on disk but our own writes
      const seen = (await call(ts, "GET", "/api/v1/properties", { rd: "rdKey1" })).json?.data as { name: string; mqtt: { port: number } };
      expect([seen.name, seen.mqtt.port]).toEqual([`n${i}`, 1000 + i]);
      const onDisk = JSON.parse(await readFile(join(ts.stateDir, "properties.json"), "utf8")) as typeof seen;
      expect([onDisk.name, onDisk.mqtt.port]).toEqual([`n${i}`, 1000 + i]);
    }
  });

  it("keeps the live value of an output that is not saved, and takes a saved one from the file", async () => {
    const ts = await startServer();
    await call(ts, "PUT", "/api/v1/data/entries/1/pin", { rd: "rdKey7", wr: "wrKey7", body: "pin=0.5" }); // PWM: memory only
    await edit(ts.stateDir, "data.json", (doc) => (doc["entries"][2]["pin"] = false)); // RELAY: save=true
    expect(await ts.device.reload()).toEqual(["data"]);
    const data = (await call(ts, "GET", "/api/v1/data/entries", { rd: "rdKey7" })).json?.data as Array<{ pin: unknown }>;
    expect(data.map((e) => e.pin)).toEqual([347, 0.5, false, false]);
  });

  it("throws ReloadError naming a missing file, and changes nothing", async () => {
    const ts = await startServer();
    const { rm } = await import("node:fs/promises");
    await rm(join(ts.stateDir, "httpro.json"));
    await expect(ts.device.reload()).rejects.toThrow(new ReloadError(`${ts.stateDir}/httpro.json: missing (a restart seeds it from the factory default)`));
    expect((await call(ts, "GET", "/api/v1/httpro/name", { rd: "rdKey3" })).text).toBe(ok("user_ro"));
  });
});

describe("reload and the read-only device document", () => {
  it("a hand-edited device.json is not served: device comes from the installed config", async () => {
    const ts = await startServer();
    await edit(ts.stateDir, "device.json", (doc) => {
      doc[0].address = "DEADBEEF0000";
    });
    await ts.device.reload();
    expect((await call(ts, "GET", "/api/v1/device/0/address")).text).toBe(ok("004082ABCDEF"));
  });
});
