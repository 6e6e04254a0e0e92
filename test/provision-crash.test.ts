/**
 * The provisioning tool's interruption guarantee: killed with SIGKILL at seeded random moments and
 * run again, it ends with every device on keys the output file holds, and no device whose keys
 * nobody knows. The seed is fixed (APIKEYD_PROVISION_SEED=<n> tries another schedule).
 */

import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { NODE_FS, writeFileDurably, type StoreFs } from "../src/state/store.ts";
import { call, cleanup, closeAgents, ensureBuilt, seededRandom, startServer, tempDir, until, type TestServer } from "./helpers.ts";
import {
  expectDeviceHolds,
  FACTORY,
  hostOf,
  readSecrets,
  ROOMY_FLAG,
  ROOMY_THROTTLE,
  runTool,
  spawnTool,
  startFleet,
  writeInventory,
  type ToolRun,
} from "./provision-harness.ts";

const SEED = Number(process.env["APIKEYD_PROVISION_SEED"] ?? 1601);
const ROUNDS = 4;
const DEVICES = 3;

beforeAll(ensureBuilt, 60_000);
afterEach(cleanup);
afterAll(closeAgents);

/** Where in a run the kill lands. */
type KillPoint =
  | { kind: "request"; n: number; extraMs: number } // a few ms after the n-th request reaches a device
  | { kind: "change"; n: number } // as the n-th key change reaches a device (its answer is lost)
  | { kind: "master"; n: number }; // as the n-th change of an apikeys pair reaches a device

/** A random kill point; `kind` forces the kind (the seed still picks where). */
function pickKillPoint(random: () => number, changesLeft: number, kind?: KillPoint["kind"]): KillPoint {
  const roll = kind === undefined ? random() : { request: 0, change: 0.5, master: 0.9 }[kind];
  if (roll < 0.4) return { kind: "request", n: 1 + Math.floor(random() * changesLeft * 5), extraMs: Math.floor(random() * 5) };
  if (roll < 0.75) return { kind: "change", n: 1 + Math.floor(random() * changesLeft) };
  return { kind: "master", n: 1 + Math.floor(random() * Math.ceil(changesLeft / 7)) };
}

/** Runs the tool and kills it with SIGKILL at `point`, watching the requests the fleet receives. */
async function runAndKill(fleet: readonly TestServer[], args: readonly string[], cwd: string, point: KillPoint): Promise<ToolRun> {
  const { child, exited } = spawnTool(args, cwd);
  let requests = 0;
  let changes = 0;
  let masters = 0;
  const onRequest = (req: IncomingMessage): void => {
    requests += 1;
    const change = req.method === "PUT" && /^\/api\/v1\/apikeys\/keys\/\d+$/.test(req.url ?? "");
    if (change) changes += 1;
    if (change && req.url?.endsWith("/keys/1")) masters += 1;
    if (point.kind === "request" && requests === point.n) setTimeout(() => child.kill("SIGKILL"), point.extraMs);
    if (point.kind === "change" && change && changes === point.n) child.kill("SIGKILL");
    if (point.kind === "master" && change && req.url?.endsWith("/keys/1") && masters === point.n) child.kill("SIGKILL");
  };
  for (const ts of fleet) ts.server.prependListener("request", onRequest);
  try {
    return await exited;
  } finally {
    for (const ts of fleet) ts.server.removeListener("request", onRequest);
  }
}

describe("interrupted at any instant (SIGKILL), run again", () => {
  it(`ends with every device on the keys the output holds (seed ${SEED}, ${ROUNDS} rounds)`, async () => {
    const random = seededRandom(SEED);
    let killed = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const dir = await tempDir();
      const fleet = await startFleet(DEVICES);
      const inventory = await writeInventory(dir, fleet.map(hostOf));
      const out = join(dir, "secrets.json");
      const args = ["--inventory", inventory, "--out", out, "--concurrency", "2", ...ROOMY_FLAG];

      // Two kills per round: the first within the first two devices' 14 changes (so the run
      // always has work left), the second somewhere in what the re-run has left to do.
      // Every other round starts with a kill as an apikeys pair changes, the moment when a lost
      // journal line would leave a device that nobody can open.
      for (const changesLeft of [14, 7]) {
        const kind = changesLeft === 14 && round % 2 === 1 ? "master" : undefined;
        const ended = await runAndKill(fleet, args, dir, pickKillPoint(random, changesLeft, kind));
        if (ended.signal === "SIGKILL") killed += 1;
        else expect(ended.code, `round ${round}: ${ended.stdout}${ended.stderr}`).toBe(0);
      }

      const final = await runTool(args, dir);
      expect(final.code, `round ${round}: ${final.stdout}${final.stderr}`).toBe(0);
      const secrets = await readSecrets(out);
      for (const ts of fleet) await expectDeviceHolds(ts, secrets[hostOf(ts)]);
      expect(existsSync(`${out}.journal`)).toBe(false);
      expect(existsSync(`${out}.lock`)).toBe(false);

      const again = await runTool(args, dir);
      expect(again.stdout).toContain(`${DEVICES} devices: 0 provisioned now, ${DEVICES} already provisioned, 0 failed`);
      await cleanup();
    }
    // Every round's first run has at least one whole device left when it is killed.
    expect(killed).toBeGreaterThanOrEqual(ROUNDS);
  }, 60_000);
});

describe("what the journal tells a re-run", () => {
  it("finds an apikeys pair changed by a killed run, confirms landed changes, redoes lost ones", async () => {
    const dir = await tempDir();
    const [ts] = await startFleet(1);
    const host = hostOf(ts!);
    const out = join(dir, "secrets.json");
    // A killed run's traces: `data` and then `apikeys` changed on the device (answers lost),
    // `properties` journaled but never sent, and a line torn by the kill.
    const data = { rd: "data-rd-from-the-killed-run-0001", wr: "data-wr-from-the-killed-run-0001" };
    const apikeys = { rd: "apikeys-rd-from-killed-run-00001", wr: "apikeys-wr-from-killed-run-00001" };
    const lost = { rd: "properties-rd-never-sent-0000001", wr: "properties-wr-never-sent-0000001" };
    const line = (endpoint: string, next: { rd: string; wr: string }): string =>
      JSON.stringify({ host, endpoint, oldRd: FACTORY[endpoint]!.rd, oldWr: FACTORY[endpoint]!.wr, newRd: next.rd, newWr: next.wr }) + "\n";
    await writeFile(`${out}.journal`, line("properties", lost) + line("data", data) + line("apikeys", apikeys) + `{"host":"${host}","endpo`, { mode: 0o600 });
    expect((await call(ts!, "PUT", "/api/v1/apikeys/keys/6", { rd: "rdKey2", wr: "wrKey2", body: new URLSearchParams(data).toString() })).status).toBe(200);
    expect((await call(ts!, "PUT", "/api/v1/apikeys/keys/1", { rd: "rdKey2", wr: "wrKey2", body: new URLSearchParams(apikeys).toString() })).status).toBe(200);
    // The inventory still says factory keys: the journal is what knows better.
    const inventory = await writeInventory(dir, [host]);

    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stderr).toContain(`${host}: data: found the keys of an interrupted change; checking them`);
    expect(run.stderr).toContain(`${host}: apikeys: found the keys of an interrupted change; checking them`);
    const secrets = await readSecrets(out);
    await expectDeviceHolds(ts!, secrets[host]);
    expect(secrets[host]?.["apikeys"]).toEqual(apikeys);
    expect(secrets[host]?.["data"]).toEqual(data);
    expect(secrets[host]?.["properties"]).not.toEqual(lost);
    expect(existsSync(`${out}.journal`)).toBe(false);
  });
});

describe("confirm-or-revert: a run killed before it checked a change", () => {
  it("leaves the device to go back, at the deadline, to the old keys its journal holds; a re-run finishes", async () => {
    const dir = await tempDir();
    const now = { ms: Date.now() };
    const ts = await startServer({ server: { throttle: ROOMY_THROTTLE, clock: () => now.ms, keyLifeTickMs: 10 } });
    const out = join(dir, "secrets.json");
    const args = ["--inventory", await writeInventory(dir, [hostOf(ts)]), "--out", out, "--confirm", "30", ...ROOMY_FLAG];
    // Killed as the first check of the first change arrives: the change landed, nothing confirmed it.
    const { child, exited } = spawnTool(args, dir);
    const onRequest = (req: IncomingMessage): void => {
      if (req.method === "GET" && req.url === "/api/v1/properties" && req.headers["apirdkey"] !== "rdKey1") child.kill("SIGKILL");
    };
    ts.server.prependListener("request", onRequest);
    expect((await exited).signal).toBe("SIGKILL");
    ts.server.removeListener("request", onRequest);
    const intents = (await readFile(`${out}.journal`, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { endpoint: string; oldRd: string; newRd: string });
    expect(intents.map((i) => i.endpoint)).toEqual(["properties"]);
    const [intent] = intents;
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: intent!.newRd })).status).toBe(200);
    now.ms += 30_000;
    await until("the device reverted", async () => (await call(ts, "GET", "/api/v1/properties/name", { rd: intent!.oldRd })).status === 200);
    expect((await call(ts, "GET", "/api/v1/properties/name", { rd: intent!.newRd })).status).toBe(401);
    const final = await runTool(args, dir);
    expect(final.code, final.stdout + final.stderr).toBe(0);
    await expectDeviceHolds(ts, (await readSecrets(out))[hostOf(ts)]);
    // Every change of the finished run was confirmed: nothing reverts later.
    now.ms += 3_600_000;
    await new Promise((resolve) => setTimeout(resolve, 100));
    await expectDeviceHolds(ts, (await readSecrets(out))[hostOf(ts)]);
  });
});

describe("what a killed run leaves behind", () => {
  it("removes the temporary copies of the output file and the journal, and nothing else", async () => {
    const dir = await tempDir();
    const [ts] = await startFleet(1);
    const out = join(dir, "secrets.json");
    // Killed between the fsync and the rename: the temporary files stay, under writeFileDurably's own names.
    const killedBeforeRename: StoreFs = { ...NODE_FS, rename: () => Promise.reject(new Error("killed")), unlink: async () => undefined };
    await expect(writeFileDurably(killedBeforeRename, dir, "secrets.json", "{}\n")).rejects.toThrow("killed");
    await expect(writeFileDurably(killedBeforeRename, dir, "secrets.json.journal", "")).rejects.toThrow("killed");
    await writeFile(join(dir, ".unrelated.tmp"), "");
    expect((await readdir(dir)).filter((name) => name.startsWith(".secrets.json.")).length).toBe(2);

    const run = await runTool(["--inventory", await writeInventory(dir, [hostOf(ts!)]), "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect((await readdir(dir)).filter((name) => name.startsWith(".")).sort()).toEqual([".unrelated.tmp"]);
  });
});
