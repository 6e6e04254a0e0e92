/**
 * The fleet provisioning tool (dist/provision.js) against real servers on loopback ports, run as a
 * child process the way an operator runs it.
 */

import { existsSync } from "node:fs";
import { chmod, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_THROTTLE } from "../src/access/throttle.ts";
import { createLogger } from "../src/common/log.ts";
import { call, cleanup, closeAgents, ensureBuilt, startServer, tempDir } from "./helpers.ts";
import {
  allKeys,
  closedPort,
  expectDeviceHolds,
  FACTORY,
  hostOf,
  readSecrets,
  ROOMY_FLAG,
  runTool,
  startFleet,
  writeInventory,
} from "./provision-harness.ts";

beforeAll(ensureBuilt, 60_000);
afterEach(cleanup);
afterAll(closeAgents);

describe("a full run", () => {
  it("rotates with --grace, --label and --expires: the old keys open until the grace ends, every change confirmed", async () => {
    const dir = await tempDir();
    const [ts] = await startFleet(1);
    const out = join(dir, "secrets.json");
    const args = ["--inventory", await writeInventory(dir, [hostOf(ts!)]), "--out", out, "--grace", "600", "--label", "fleet 2030", "--expires", "2099-01-01 00:00:00", ...ROOMY_FLAG];
    const run = await runTool(args, dir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const keys = (await readSecrets(out))[hostOf(ts!)]!;
    const pairs = ((await call(ts!, "GET", "/api/v1/apikeys", { rd: keys["apikeys"]!.rd })).json?.data as { keys: Array<Record<string, unknown>> }).keys;
    for (const pair of pairs) {
      expect(pair).toMatchObject({ label: "fleet 2030", confirmUntil: 0, expires: pair["name"] === "apikeys" ? "" : "2099-01-01 00:00:00" });
      expect(pair["graceUntil"]).toBeGreaterThan(Date.now() / 1000);
      const name = String(pair["name"]);
      expect((await call(ts!, "GET", `/api/v1/${name}`, { rd: FACTORY[name]!.rd })).status).toBe(200);
      expect((await call(ts!, "GET", `/api/v1/${name}`, { rd: keys[name]!.rd })).status).toBe(200);
    }
    const bad = await runTool([...args.slice(0, 4), "--confirm", "5"], dir);
    expect(bad.code).toBe(2);
  });

  it("--rotate gives a fleet it provisioned before fresh keys again, its current keys taken from the output file", async () => {
    const dir = await tempDir();
    const fleet = await startFleet(2);
    const inventory = await writeInventory(dir, fleet.map(hostOf));
    const out = join(dir, "secrets.json");
    expect((await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir)).code).toBe(0);
    const first = await readSecrets(out);

    const planned = await runTool(["--rotate", "--out", out, "--dry-run", ...ROOMY_FLAG], dir);
    expect(planned.stdout).toContain("Dry run, nothing was changed. 2 devices: 2 would change (14 pairs to get new keys)");

    // No inventory: the devices are those of the output file, their keys the file's.
    const again = await runTool(["--rotate", "--out", out, ...ROOMY_FLAG], dir);
    expect([again.code, again.stdout]).toEqual([0, expect.stringContaining("2 devices: 2 provisioned now, 0 already provisioned, 0 failed; 14 pairs got new keys.")]);
    const second = await readSecrets(out);
    for (const ts of fleet) await expectDeviceHolds(ts, second[hostOf(ts)]);
    const overlap = allKeys(second).filter((key) => allKeys(first).includes(key));
    expect(overlap).toEqual([]);
    // The old keys are dead on every device.
    for (const ts of fleet) expect((await call(ts, "GET", "/api/v1/apikeys", { rd: first[hostOf(ts)]?.["apikeys"]?.rd })).status).toBe(401);
  });

  it("--rotate without an output file to take devices from is refused before anything is done", async () => {
    const dir = await tempDir();
    const run = await runTool(["--rotate", "--out", join(dir, "secrets.json")], dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("holds no device to rotate again; give an --inventory for a first run");
  });

  it("gives every pair of every device fresh keys, records them (0600) and a re-run changes nothing", async () => {
    const dir = await tempDir();
    const fleet = await startFleet(3);
    const [first, second, third] = fleet as [(typeof fleet)[0], (typeof fleet)[0], (typeof fleet)[0]];
    // The full form and the shortcut (a bare host has the factory apikeys pair) side by side.
    const inventory = await writeInventory(dir, [{ host: hostOf(first), apikeys: FACTORY["apikeys"] }, hostOf(second), { host: hostOf(third) }]);
    const out = join(dir, "secrets.json");

    const run = await runTool(["--inventory", inventory, "--out", out, "--concurrency", "2", ...ROOMY_FLAG], dir);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("3 devices: 3 provisioned now, 0 already provisioned, 0 failed; 21 pairs got new keys.");
    const secrets = await readSecrets(out);
    expect(Object.keys(secrets).sort()).toEqual(fleet.map(hostOf).sort());
    for (const ts of fleet) await expectDeviceHolds(ts, secrets[hostOf(ts)]);

    const keys = allKeys(secrets);
    expect(new Set(keys).size).toBe(42);
    for (const key of keys) expect(key).toMatch(/^[A-Za-z0-9_-]{32}$/); // 192 bits, header- and form-safe
    for (const key of keys) expect(run.stdout + run.stderr).not.toContain(key);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect(existsSync(`${out}.journal`)).toBe(false);
    expect(existsSync(`${out}.lock`)).toBe(false);

    const outBefore = await readFile(out, "utf8");
    const statesBefore = await Promise.all(fleet.map((ts) => readFile(join(ts.stateDir, "apikeys.json"), "utf8")));
    const again = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("3 devices: 0 provisioned now, 3 already provisioned, 0 failed; 0 pairs got new keys.");
    expect(await readFile(out, "utf8")).toBe(outBefore);
    expect(await Promise.all(fleet.map((ts) => readFile(join(ts.stateDir, "apikeys.json"), "utf8")))).toEqual(statesBefore);
  });
});

describe("the output file", () => {
  it("is merged: other hosts' keys are kept, and a loose mode becomes 0600", async () => {
    const dir = await tempDir();
    const [ts] = await startFleet(1);
    const out = join(dir, "secrets.json");
    const other = { "10.1.2.3": { apikeys: { rd: "keep-this-rd", wr: "keep-this-wr" } } };
    await writeFile(out, JSON.stringify(other), { mode: 0o644 });
    await chmod(out, 0o644);
    const inventory = await writeInventory(dir, `# one gateway\n${hostOf(ts!)}\n`, "devices.txt");

    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code).toBe(0);
    const secrets = await readSecrets(out);
    expect(secrets["10.1.2.3"]).toEqual(other["10.1.2.3"]);
    await expectDeviceHolds(ts!, secrets[hostOf(ts!)]);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
  });

  it("is never overwritten when it is not the tool's own format", async () => {
    const dir = await tempDir();
    const [ts] = await startFleet(1);
    const out = join(dir, "secrets.json");
    await writeFile(out, "not json at all");
    const inventory = await writeInventory(dir, [hostOf(ts!)]);

    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("is not JSON; refusing to overwrite it");
    expect(await readFile(out, "utf8")).toBe("not json at all");
    expect((await call(ts!, "GET", "/api/v1/apikeys/keys/1/rd", { rd: "rdKey2" })).json?.data).toBe("rdKey2");
  });
});

describe("usage refusals", () => {
  it("name the argument by number, never quote it (it may be a key), and touch nothing", async () => {
    const dir = await tempDir();
    const out = join(dir, "secrets.json");
    const inventory = await writeInventory(dir, ["127.0.0.1:9"]);
    const cases: Array<[string[], string]> = [
      [["--inventory", inventory, "--out", out, "--SECRETKEY"], 'argument 5 is not an option (a value that begins with "-" is given as --option=VALUE)'],
      [["--inventory", inventory, "-SECRETKEY", "--out", out], 'argument 3 is not an option (a value that begins with "-" is given as --option=VALUE)'],
      [["--inventory", inventory, "--out", out, "SECRETKEY"], "argument 5 is not an option; only options are taken"],
      [["--inventory", inventory, "--dry-run=SECRETKEY", "--out", out], "--dry-run takes no value"],
    ];
    for (const [args, message] of cases) {
      const run = await runTool(args, dir);
      expect({ args, code: run.code, stdout: run.stdout, stderr: run.stderr.split("\n")[0] }).toEqual({ args, code: 2, stdout: "", stderr: `provision: ${message}` });
      expect(run.stderr).not.toContain("SECRET");
    }
    expect(existsSync(out)).toBe(false);
  });
});

describe("devices that cannot be done", () => {
  it("names an unreachable device and one whose inventory key is wrong, does the others, exits 1", async () => {
    const dir = await tempDir();
    const [good, wrongKey] = await startFleet(2);
    const unreachable = `127.0.0.1:${await closedPort()}`;
    const inventory = await writeInventory(dir, [
      hostOf(good!),
      unreachable,
      { host: hostOf(wrongKey!), apikeys: { rd: "not-the-key", wr: "wrKey2" } },
    ]);
    const out = join(dir, "secrets.json");

    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain("3 devices: 1 provisioned now, 0 already provisioned, 2 failed");
    expect(run.stdout).toContain(`  ${unreachable}: connection refused`);
    expect(run.stdout).toContain(`  ${hostOf(wrongKey!)}: refused the apikeys read key known for it (inventory rd `);
    const secrets = await readSecrets(out);
    expect(Object.keys(secrets)).toEqual([hostOf(good!)]);
    await expectDeviceHolds(good!, secrets[hostOf(good!)]);
    // Untouched: still the factory keys.
    expect((await call(wrongKey!, "GET", "/api/v1/apikeys/keys/6/rd", { rd: "rdKey2" })).json?.data).toBe("rdKey7");
  });
});

describe("--dry-run", () => {
  it("reads and reports what would change, and changes nothing", async () => {
    const dir = await tempDir();
    const [ts] = await startFleet(1);
    const inventory = await writeInventory(dir, [hostOf(ts!)]);
    const out = join(dir, "secrets.json");
    const stateBefore = await readFile(join(ts!.stateDir, "apikeys.json"), "utf8");

    const run = await runTool(["--inventory", inventory, "--out", out, "--dry-run", ...ROOMY_FLAG], dir);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain(`${hostOf(ts!)}: would give 7 pairs new keys (properties, httpro, httprw, httpsu, process, data, apikeys)`);
    expect(run.stdout).toContain("Dry run, nothing was changed. 1 device: 1 would change (7 pairs to get new keys)");
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.journal`)).toBe(false);
    expect(existsSync(`${out}.lock`)).toBe(false);
    expect(await readFile(join(ts!.stateDir, "apikeys.json"), "utf8")).toBe(stateBefore);
  });
});

describe("the devices' wrong-key throttle (docs/api.md §5)", () => {
  it("a rotation from the factory keys sends no wrong key at all, so it never waits for the throttle", async () => {
    const dir = await tempDir();
    // The server's default throttle, and a log that shows every wrong key the device saw.
    const lines: string[] = [];
    const ts = await startServer({ server: { throttle: DEFAULT_THROTTLE, log: createLogger("json", (line) => lines.push(line)) } });
    const inventory = await writeInventory(dir, [hostOf(ts)]);
    const out = join(dir, "secrets.json");

    const t0 = performance.now();
    const run = await runTool(["--inventory", inventory, "--out", out], dir);
    const seconds = (performance.now() - t0) / 1000;
    expect(run.code).toBe(0);
    expect(lines.filter((l) => l.includes('"key-refused"'))).toEqual([]);
    expect(run.stderr).not.toContain("pausing");
    expect(run.stderr).toContain("read back with the new apikeys key: every pair holds its new keys, no grace or confirmation pending");
    await expectDeviceHolds(ts, (await readSecrets(out))[hostOf(ts)]);
    // The bound is 5 s per device on loopback; a loaded test machine gets some slack.
    expect(seconds).toBeLessThan(5);
  });

  it("honours Retry-After when a device blocks it anyway (other wrong keys from the same address)", async () => {
    const dir = await tempDir();
    // Blocked after 5 wrong keys, for 1 s: someone else on this address (a NAT) guessed just before the run.
    const [ts] = await startFleet(1, { ...DEFAULT_THROTTLE, maxFailures: 5, blockMs: 1_000, maxBlockMs: 1_000 });
    for (let i = 0; i < 5; i++) expect((await call(ts!, "GET", "/api/v1/properties", { rd: "wrong" })).status).toBe(401);
    const inventory = await writeInventory(dir, [hostOf(ts!)]);
    const out = join(dir, "secrets.json");

    const run = await runTool(["--inventory", inventory, "--out", out], dir);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain("throttled (429): waiting 1 s as the device's Retry-After asks");
    const secrets = await readSecrets(out);
    expect(Object.keys(secrets[hostOf(ts!)] ?? {})).toHaveLength(7);
  });
});
