// State on disk (docs/api.md §6): what survives a restart, file modes, the config folder never written,
// seeding, stale files, live `data`, and an update that adds an endpoint.

import { readdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { call, cleanup, closeAgents, CONFIG_DIR, copyConfig, ok, startServer, type StartOptions, type TestServer } from "./helpers.ts";

afterEach(cleanup);
afterAll(closeAgents);

/** Stops a server and starts a new one on the same config and state folders. */
async function restart(ts: TestServer, options: StartOptions = {}): Promise<TestServer> {
  await ts.stop();
  return startServer({ configDir: ts.configDir, stateDir: ts.stateDir, ...options });
}

const readJson = async (path: string): Promise<unknown> => JSON.parse(await readFile(path, "utf8"));

/** Every file under a folder, by relative path: its bytes and modification time. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out.set(path, `${(await stat(path)).mtimeMs} ${(await readFile(path)).toString("base64")}`);
  }
  return out;
}

/** One write on every endpoint that has writable members, each with its expected fresh read. */
const WRITES: ReadonlyArray<{ path: string; rd: string; wr: string; body: string; read: string; value: unknown }> = [
  { path: "/api/v1/properties/mqtt", rd: "rdKey1", wr: "wrKey1", body: "port=8883&enable=1", read: "/api/v1/properties/mqtt/port", value: 8883 },
  { path: "/api/v1/httpro", rd: "rdKey3", wr: "wrKey3", body: "name=viewer", read: "/api/v1/httpro/name", value: "viewer" },
  { path: "/api/v1/httprw", rd: "rdKey4", wr: "wrKey4", body: "pass=rw-pass", read: "/api/v1/httprw/pass", value: "rw-pass" },
  { path: "/api/v1/httpsu", rd: "rdKey5", wr: "wrKey5", body: "name=admin", read: "/api/v1/httpsu/name", value: "admin" },
  { path: "/api/v1/process/entries/0", rd: "rdKey6", wr: "wrKey6", body: "unit=V&shift=5", read: "/api/v1/process/entries/0/shift", value: 5 },
  { path: "/api/v1/data/entries/2", rd: "rdKey7", wr: "wrKey7", body: "pin=0", read: "/api/v1/data/entries/2/pin", value: false },
  // Last: it changes the read key of `properties`.
  { path: "/api/v1/apikeys/keys/0", rd: "rdKey2", wr: "wrKey2", body: "rd=field-rd1", read: "/api/v1/apikeys/keys/0/rd", value: "field-rd1" },
];

async function writeEverything(ts: TestServer): Promise<void> {
  for (const w of WRITES) expect([w.path, (await call(ts, "PUT", w.path, { rd: w.rd, wr: w.wr, body: w.body })).status]).toEqual([w.path, 200]);
}

describe("a restart keeps every answered change", () => {
  it("on every endpoint, and the keys changed over HTTP are the keys after it", async () => {
    const configBefore = await snapshot(CONFIG_DIR);
    let ts = await startServer();
    await writeEverything(ts);
    ts = await restart(ts);
    for (const w of WRITES) {
      const rd = w.rd === "rdKey1" ? "field-rd1" : w.rd; // the last write changed it
      expect([w.read, (await call(ts, "GET", w.read, { rd })).text]).toEqual([w.read, ok(w.value)]);
    }
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "rdKey1" })).status).toBe(401);
    expect((await call(ts, "GET", "/api/v1/properties/mqtt/enable", { rd: "field-rd1" })).text).toBe(ok(true));
    expect(await snapshot(CONFIG_DIR)).toEqual(configBefore);
  });

  it("state files are readable by their owner only (0600), seeded or written", async () => {
    const ts = await startServer();
    const mode = async (name: string): Promise<string> => ((await stat(join(ts.stateDir, name))).mode & 0o777).toString(8);
    const names = (await readdir(ts.stateDir)).sort();
    expect(names).toEqual(["apikeys.json", "data.json", "device.json", "fingerprint.key", "httpro.json", "httprw.json", "httpsu.json", "process.json", "properties.json"]);
    for (const name of names) expect([name, await mode(name)]).toEqual([name, "600"]);
    await writeEverything(ts);
    for (const name of names) expect([name, await mode(name)]).toEqual([name, "600"]);
  });

  it("the config folder is never written: its files keep their bytes and times", async () => {
    const configDir = await copyConfig();
    const before = await snapshot(configDir);
    let ts = await startServer({ configDir });
    await writeEverything(ts);
    await unlink(join(ts.stateDir, "httpsu.json")); // the restart seeds it again
    ts = await restart(ts);
    await ts.stop();
    expect(await snapshot(configDir)).toEqual(before);
  });
});

describe("seeding and stale files", () => {
  it("a missing state file is seeded from its factory default; the others are kept", async () => {
    let ts = await startServer();
    await call(ts, "PUT", "/api/v1/httpro/name", { rd: "rdKey3", wr: "wrKey3", body: "name=changed" });
    await call(ts, "PUT", "/api/v1/httprw/name", { rd: "rdKey4", wr: "wrKey4", body: "name=kept" });
    await ts.stop();
    await unlink(join(ts.stateDir, "httpro.json"));
    ts = await restart(ts);
    expect((await call(ts, "GET", "/api/v1/httpro/name", { rd: "rdKey3" })).text).toBe(ok("user_ro"));
    expect((await call(ts, "GET", "/api/v1/httprw/name", { rd: "rdKey4" })).text).toBe(ok("kept"));
    expect(await readJson(join(ts.stateDir, "httpro.json"))).toEqual(await readJson(join(CONFIG_DIR, "httpro.json")));
    expect(((await stat(join(ts.stateDir, "httpro.json"))).mode & 0o777).toString(8)).toBe("600");
  });

  it("a state file whose endpoint is no longer configured is left alone and named in a warning", async () => {
    let ts = await startServer();
    const stale = join(ts.stateDir, "oldthing.json");
    await writeFile(stale, '{"legacy": true}\n', { mode: 0o600 });
    const warnings: string[] = [];
    ts = await restart(ts, { load: { warn: (m) => void warnings.push(m) } });
    expect(warnings.filter((w) => w.includes(stale))).toHaveLength(1);
    expect(await readFile(stale, "utf8")).toBe('{"legacy": true}\n');
    expect((await call(ts, "GET", "/api/v1/oldthing")).status).toBe(404);
  });
});

describe("the data endpoint across a restart", () => {
  const NOW_MS = 1_700_000_000_000;

  it("the DO output (save=true) keeps its value; the AO output is back to its factory value", async () => {
    const rw = { rd: "rdKey7", wr: "wrKey7" };
    let ts = await startServer({ server: { clock: () => NOW_MS } });
    expect((await call(ts, "PUT", "/api/v1/data/entries/1", { ...rw, body: "pin=55.5" })).status).toBe(200);
    expect((await call(ts, "PUT", "/api/v1/data/entries/2", { ...rw, body: "pin=false" })).status).toBe(200);
    ts = await restart(ts);
    const entries = ((await call(ts, "GET", "/api/v1/data", rw)).json?.data as { entries: Array<{ pin: unknown; time: number }> }).entries;
    expect(entries.map((e) => [e.pin, e.time])).toEqual([
      [347, 0],
      [0.004, 0],
      [false, NOW_MS / 1000],
      [false, 0],
    ]);
    expect((await call(ts, "GET", "/api/v1/data/time", rw)).text).toBe(ok(NOW_MS / 1000));
  });

  it("an output whose save flag was turned off starts from its factory value", async () => {
    let ts = await startServer();
    await call(ts, "PUT", "/api/v1/data/entries/2/pin", { rd: "rdKey7", wr: "wrKey7", body: "pin=0" });
    expect((await call(ts, "PUT", "/api/v1/process/entries/2/save", { rd: "rdKey6", wr: "wrKey6", body: "save=0" })).text).toBe(ok(false));
    ts = await restart(ts);
    expect((await call(ts, "GET", "/api/v1/data/entries/2/pin", { rd: "rdKey7" })).text).toBe(ok(true));
  });
});

describe("an update that adds an endpoint", () => {
  it("serves it with its factory keys and adds its pair to the state's apikeys.json, keeping changed keys", async () => {
    const configDir = await copyConfig();
    let ts = await startServer({ configDir });
    await call(ts, "PUT", "/api/v1/apikeys/keys/0/rd", { rd: "rdKey2", wr: "wrKey2", body: "rd=field-rd1" });
    await call(ts, "PUT", "/api/v1/apikeys/keys/1/wr", { rd: "rdKey2", wr: "wrKey2", body: "wr=field-wr2" });
    await ts.stop();

    // The vendor's update: foo.json and a pair named foo.
    const foo = { name: "user_foo", pass: "pass_foo", "Json+typeName": "MkcJsonLib.jUser", "Json+typeRevision": 0 };
    await writeFile(join(configDir, "foo.json"), JSON.stringify(foo, null, 2));
    const apikeys = (await readJson(join(configDir, "apikeys.json"))) as { keys: object[] };
    // A copy of a factory pair (revision 1: label, enabled, expires, ...) with its own name and keys.
    apikeys.keys.push({ ...apikeys.keys[0], name: "foo", rd: "rdKeyFoo", wr: "wrKeyFoo" });
    await writeFile(join(configDir, "apikeys.json"), JSON.stringify(apikeys, null, 2));

    ts = await restart(ts);
    expect((await call(ts, "GET", "/api/v1/foo", { rd: "rdKeyFoo" })).text).toBe(ok(foo));
    expect((await call(ts, "PUT", "/api/v1/foo/name", { rd: "rdKeyFoo", wr: "wrKeyFoo", body: "name=x" })).text).toBe(ok("x"));
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: "field-rd1" })).text).toBe(ok("eNetMini1"));

    const state = (await readJson(join(ts.stateDir, "apikeys.json"))) as { keys: Array<{ name: string; rd: string; wr: string }> };
    expect(state.keys.map((p) => `${p.name} ${p.rd} ${p.wr}`)).toEqual([
      "properties field-rd1 wrKey1",
      "apikeys rdKey2 field-wr2",
      "httpro rdKey3 wrKey3",
      "httprw rdKey4 wrKey4",
      "httpsu rdKey5 wrKey5",
      "process rdKey6 wrKey6",
      "data rdKey7 wrKey7",
      "foo rdKeyFoo wrKeyFoo",
    ]);
    expect(await readJson(join(ts.stateDir, "foo.json"))).toEqual({ ...foo, name: "x" });
  });
});

describe("an update that raises a type's revision or corrects the device identity", () => {
  it("adds the new members with their factory values, keeps the settings, and makes the new member writable", async () => {
    const configDir = await copyConfig();
    let ts = await startServer({ configDir });
    expect((await call(ts, "PUT", "/api/v1/properties/mqtt", { rd: "rdKey1", wr: "wrKey1", body: "user=field-user&port=8883" })).status).toBe(200);
    await ts.stop();

    // The firmware update: jMqttEntry revision 1 adds a writable `tls` member (docs/api.md §1: a newer revision only adds).
    const propsPath = join(configDir, "properties.json");
    const props = (await readJson(propsPath)) as { mqtt: Record<string, unknown> };
    const { ["Json+typeName"]: typeName, ["Json+typeRevision"]: _rev, ...mqtt } = props.mqtt;
    void _rev;
    props.mqtt = { ...mqtt, tls: false, "Json+typeName": typeName, "Json+typeRevision": 1 };
    await writeFile(propsPath, JSON.stringify(props, null, 2));
    const schemaPath = join(configDir, "schema", "mkc.json");
    const schema = (await readJson(schemaPath)) as { types: Record<string, { writable: Record<string, unknown> }> };
    (schema.types["MkcJsonLib.jMqttEntry"] as { writable: Record<string, unknown> }).writable["tls"] = "boolean";
    await writeFile(schemaPath, JSON.stringify(schema));
    const warnings: string[] = [];
    ts = await startServer({ configDir, stateDir: ts.stateDir, load: { warn: (m) => warnings.push(m) } });

    const mqttNow = (await call(ts, "GET", "/api/v1/properties/mqtt", { rd: "rdKey1" })).json?.data as Record<string, unknown>;
    expect(mqttNow["user"]).toBe("field-user");
    expect(mqttNow["port"]).toBe(8883);
    expect(mqttNow["tls"]).toBe(false);
    expect(Object.keys(mqttNow).slice(-3)).toEqual(["tls", "Json+typeName", "Json+typeRevision"]);
    expect(mqttNow["Json+typeRevision"]).toBe(1);
    expect(warnings.some((w) => w.includes("type revisions") && w.includes("properties.json"))).toBe(true);
    // On disk too, and the new member is writable like any other.
    expect(((await readJson(join(ts.stateDir, "properties.json"))) as { mqtt: Record<string, unknown> }).mqtt["tls"]).toBe(false);
    expect((await call(ts, "PUT", "/api/v1/properties/mqtt/tls", { rd: "rdKey1", wr: "wrKey1", body: "tls=true" })).text).toBe(ok(true));
  });

  it("serves device from the installed config, whatever an older state copy says", async () => {
    const configDir = await copyConfig();
    let ts = await startServer({ configDir });
    await ts.stop();
    const devicePath = join(configDir, "device.json");
    const device = (await readJson(devicePath)) as Array<{ board: Record<string, unknown> }>;
    (device[0] as { board: Record<string, unknown> }).board["partNumber"] = 101649;
    await writeFile(devicePath, JSON.stringify(device));
    ts = await startServer({ configDir, stateDir: ts.stateDir });
    expect((await call(ts, "GET", "/api/v1/device/0/board/partNumber")).text).toBe(ok(101649));
    expect(((await readJson(join(ts.stateDir, "device.json"))) as typeof device)[0]?.board["partNumber"]).toBe(101649);
  });
});

describe("review findings on state files", () => {
  it("a state file readable by others is set back to 0600 at start, with a warning", async () => {
    let ts = await startServer();
    await ts.stop();
    const { chmod } = await import("node:fs/promises");
    await chmod(join(ts.stateDir, "apikeys.json"), 0o644);
    const warnings: string[] = [];
    ts = await startServer({ stateDir: ts.stateDir, load: { warn: (m) => warnings.push(m) } });
    expect((await stat(join(ts.stateDir, "apikeys.json"))).mode & 0o777).toBe(0o600);
    expect(warnings.some((w) => w.includes("apikeys.json") && w.includes("644"))).toBe(true);
  });

  it("turning save on keeps the output's current value: it is on disk before the PUT on process is answered", async () => {
    let ts = await startServer();
    const flag = "/api/v1/process/entries/2/save";
    expect((await call(ts, "PUT", flag, { rd: "rdKey6", wr: "wrKey6", body: "save=false" })).text).toBe(ok(false));
    expect((await call(ts, "PUT", "/api/v1/data/entries/2/pin", { rd: "rdKey7", wr: "wrKey7", body: "pin=false" })).text).toBe(ok(false));
    const before = await readFile(join(ts.stateDir, "data.json"), "utf8");
    expect((JSON.parse(before) as { entries: Array<{ pin: unknown }> }).entries[2]?.pin).toBe(true); // volatile: not on disk
    expect((await call(ts, "PUT", flag, { rd: "rdKey6", wr: "wrKey6", body: "save=true" })).text).toBe(ok(true));
    // Answered: the value is on disk now, before any stop.
    expect(((await readJson(join(ts.stateDir, "data.json"))) as { entries: Array<{ pin: unknown }> }).entries[2]?.pin).toBe(false);
    ts = await restart(ts);
    expect((await call(ts, "GET", "/api/v1/data/entries/2/pin", { rd: "rdKey7" })).text).toBe(ok(false));
  });
});
