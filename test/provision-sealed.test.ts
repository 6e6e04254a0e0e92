/**
 * The provisioning tool's --seal (docs/provisioning.md, docs/api.md §9) against real servers: each
 * device sealed once its keys are set, checked and recorded; what the tool says before it starts;
 * re-runs on sealed devices, which show no key, so the tool proves the output file's keys by using
 * them; --rotate of a sealed fleet; and SIGKILL at seeded moments (during the key changes, as the
 * sealing arrives, during a rotation of a sealed fleet), each followed by a re-run that finishes.
 */

import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { call, cleanup, closeAgents, ensureBuilt, tempDir, type TestServer } from "./helpers.ts";
import { allKeys, expectDeviceHolds, hostOf, readSecrets, ROOMY_FLAG, runTool, spawnTool, startFleet, writeInventory, type ToolRun } from "./provision-harness.ts";

beforeAll(ensureBuilt, 60_000);
afterEach(cleanup);
afterAll(closeAgents);

const isSealed = async (ts: TestServer): Promise<boolean> => {
  const { entries } = { entries: await readFile(join(ts.stateDir, "apikeys.json"), "utf8") };
  return (JSON.parse(entries) as { sealed: boolean }).sealed;
};

/** No key of the output file in any state file of the fleet. */
async function expectNoKeyOnDisk(fleet: readonly TestServer[], keys: readonly string[]): Promise<void> {
  for (const ts of fleet) {
    for (const name of await readdir(ts.stateDir)) {
      if (name === "fingerprint.key") continue;
      const text = await readFile(join(ts.stateDir, name), "utf8").catch(() => "");
      for (const key of keys) expect(text, `${name} holds a key`).not.toContain(key);
    }
  }
}

/** Runs the tool and kills it with SIGKILL as the request `when` picks reaches a device. */
async function runAndKill(fleet: readonly TestServer[], args: readonly string[], cwd: string, when: (req: IncomingMessage) => boolean): Promise<ToolRun> {
  const { child, exited } = spawnTool(args, cwd);
  const onRequest = (req: IncomingMessage): void => {
    if (when(req)) child.kill("SIGKILL");
  };
  for (const ts of fleet) ts.server.prependListener("request", onRequest);
  try {
    return await exited;
  } finally {
    for (const ts of fleet) ts.server.removeListener("request", onRequest);
  }
}

const sealing = (req: IncomingMessage): boolean => req.method === "PUT" && req.url === "/api/v1/apikeys";
const nthChange = (n: number): ((req: IncomingMessage) => boolean) => {
  let seen = 0;
  return (req) => req.method === "PUT" && /^\/api\/v1\/apikeys\/keys\/\d+$/.test(req.url ?? "") && ++seen === n;
};

describe("--seal", () => {
  it("says first that the output file will be the only copy, seals each device after its keys are checked, and a re-run proves the keys by using them", async () => {
    const dir = await tempDir();
    const fleet = await startFleet(2);
    const out = join(dir, "secrets.json");
    const args = ["--inventory", await writeInventory(dir, fleet.map(hostOf)), "--out", out, "--seal", ...ROOMY_FLAG];
    const run = await runTool(args, dir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stderr.split("\n")[0]).toContain(`--seal: each device is sealed once its keys are set and checked, and never shows a key again: ${out}`);
    expect(run.stderr).toContain("will be the only place the keys exist");
    expect(run.stderr).toContain("sealed: the device keeps digests only");
    const secrets = await readSecrets(out);
    for (const ts of fleet) {
      expect(await isSealed(ts)).toBe(true);
      await expectDeviceHolds(ts, secrets[hostOf(ts)]);
    }
    await expectNoKeyOnDisk(fleet, allKeys(secrets));
    for (const key of allKeys(secrets)) expect(run.stdout + run.stderr).not.toContain(key);

    // Again: nothing to change, nothing written; the sealed devices are opened with the file's keys.
    const again = await runTool(args, dir);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain("2 devices: 0 provisioned now, 2 already provisioned, 0 failed");
    expect(await readSecrets(out)).toEqual(secrets);
    const dry = await runTool([...args, "--dry-run"], dir);
    expect(dry.stdout).toContain("0 would change");

    // A sealed fleet is rotated again like any other: new keys, checked, recorded.
    const rotated = await runTool(["--rotate", "--out", out, "--seal", ...ROOMY_FLAG], dir);
    expect(rotated.code, rotated.stdout + rotated.stderr).toBe(0);
    const next = await readSecrets(out);
    for (const ts of fleet) {
      await expectDeviceHolds(ts, next[hostOf(ts)]);
      expect(next[hostOf(ts)]?.["data"]).not.toEqual(secrets[hostOf(ts)]?.["data"]);
      expect((await call(ts, "GET", "/api/v1/data/time", { rd: secrets[hostOf(ts)]?.["data"]?.rd ?? "" })).status).toBe(401);
    }
    await expectNoKeyOnDisk(fleet, allKeys(next));
  });

  it.each([
    ["as the third key change reaches a device", nthChange(3)],
    ["as the ninth key change reaches a device", nthChange(9)],
    ["as the sealing reaches the first device (its answer lost)", sealing],
  ])("killed with SIGKILL %s: the re-run finishes, every device sealed on the output file's keys", async (_what, when) => {
    const dir = await tempDir();
    const fleet = await startFleet(2);
    const out = join(dir, "secrets.json");
    const args = ["--inventory", await writeInventory(dir, fleet.map(hostOf)), "--out", out, "--seal", "--concurrency", "1", ...ROOMY_FLAG];
    const killed = await runAndKill(fleet, args, dir, when);
    expect(killed.signal).toBe("SIGKILL");
    const final = await runTool(args, dir);
    expect(final.code, final.stdout + final.stderr).toBe(0);
    const secrets = await readSecrets(out);
    for (const ts of fleet) {
      expect(await isSealed(ts)).toBe(true);
      await expectDeviceHolds(ts, secrets[hostOf(ts)]);
    }
    await expectNoKeyOnDisk(fleet, allKeys(secrets));
    expect(existsSync(`${out}.journal`)).toBe(false);
    const again = await runTool(args, dir);
    expect(again.stdout).toContain("2 devices: 0 provisioned now, 2 already provisioned, 0 failed");
  });

  it("killed with SIGKILL while a sealed fleet is rotated again: the re-run finds which keys each sealed pair holds by using them", async () => {
    const dir = await tempDir();
    const fleet = await startFleet(2);
    const out = join(dir, "secrets.json");
    expect((await runTool(["--inventory", await writeInventory(dir, fleet.map(hostOf)), "--out", out, "--seal", ...ROOMY_FLAG], dir)).code).toBe(0);
    const args = ["--rotate", "--out", out, "--seal", "--concurrency", "1", ...ROOMY_FLAG];
    for (const n of [4, 8]) {
      const killed = await runAndKill(fleet, args, dir, nthChange(n));
      expect(killed.signal).toBe("SIGKILL");
    }
    // The journal holds the changes under way; without --rotate the re-run only finishes them.
    const final = await runTool(["--out", out, "--inventory", await writeInventory(dir, Object.keys(await readSecrets(out)).map((host) => ({ host, apikeys: { rd: "unknown-rd-unknown-rd-0000", wr: "unknown-wr-unknown-wr-0000" } })), "inv2.json"), "--seal", ...ROOMY_FLAG], dir);
    expect(final.code, final.stdout + final.stderr).toBe(0);
    const secrets = await readSecrets(out);
    for (const ts of fleet) {
      expect(await isSealed(ts)).toBe(true);
      await expectDeviceHolds(ts, secrets[hostOf(ts)]);
    }
    expect(existsSync(`${out}.journal`)).toBe(false);
  });
});
