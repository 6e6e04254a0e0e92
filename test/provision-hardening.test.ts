/**
 * The provisioning tool against what others can do to it: a second run on the same output, files
 * planted in a shared output folder (another user's journal, hard links, symlinks, loose modes,
 * folders others can write to), and devices whose pair names are "__proto__" or terminal escapes.
 * The tool runs as a child process, as root when the tests do (ownership cases need it).
 */

import { existsSync } from "node:fs";
import { chmod, chown, link, mkdir, readFile, rename, stat, symlink, writeFile } from "node:fs/promises";
import { createServer as createNetServer, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { UnsafeFileError } from "../src/provision/files.ts";
import { Journal, readJournal, type Intent } from "../src/provision/journal.ts";
import { NODE_FS, writeFileDurably } from "../src/state/store.ts";
import { call, cleanup, closeAgents, CONFIG_DIR, ensureBuilt, lacks, startServer, tempDir, until } from "./helpers.ts";
import { closedPort, expectDeviceHolds, FACTORY, hostOf, readSecrets, ROOMY_FLAG, ROOMY_THROTTLE, runTool, spawnTool, startFleet, writeInventory } from "./provision-harness.ts";

beforeAll(ensureBuilt, 60_000);
afterEach(cleanup);
afterAll(closeAgents);

const IS_ROOT = process.getuid?.() === 0;
/** "nobody": another user for files a root test plants. */
const OTHER_UID = 65534;

/** A device that accepts connections and never answers: a run against it sits holding its lock. */
async function silentDevice(): Promise<{ port: number; close(): void }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return {
    port: (server.address() as { port: number }).port,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}


describe("what a run says when it ends", () => {
  it("Ctrl-C says what was done and that a re-run finishes the job, and gives the lock back", async () => {
    const dir = await tempDir();
    const device = await silentDevice();
    try {
      const inventory = await writeInventory(dir, [`127.0.0.1:${device.port}`]);
      const out = join(dir, "secrets.json");
      const run = spawnTool(["--inventory", inventory, "--out", out, "--timeout", "60", ...ROOMY_FLAG], dir);
      await until("the run's lock", async () => (await readFile(`${out}.lock`, "utf8").catch(() => "")).startsWith(`${run.child.pid}\n`));
      run.child.kill("SIGINT");
      const ended = await run.exited;
      expect(ended.code).toBe(130);
      expect(ended.stderr).toContain(
        "Interrupted: 0 of 1 devices done, 0 failed, 1 not finished. Keys already changed are in the output file or its journal; run again with the same arguments to finish.\n",
      );
      expect(await readFile(`${out}.lock`, "utf8").catch(() => "gone")).toBe("gone");
    } finally {
      device.close();
    }
  });

  it("when every device failed: no 'other devices were done', and no output file named that was not written", async () => {
    const dir = await tempDir();
    const inventory = await writeInventory(dir, [`127.0.0.1:${await closedPort()}`]);
    const out = join(dir, "secrets.json");
    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain("Failed (run again with the same arguments to retry these):\n");
    expect(run.stdout).not.toContain("other devices");
    expect(run.stdout).toContain("No keys were changed, so no output file was written.\n");
    expect(run.stdout).not.toContain(out);
    expect(await readFile(out, "utf8").catch(() => "none")).toBe("none");
  });
});

describe("two runs on the same output file", () => {
  it("the second is refused while the first holds the lock (a device that never answers)", async () => {
    const dir = await tempDir();
    const device = await silentDevice();
    try {
      const inventory = await writeInventory(dir, [`127.0.0.1:${device.port}`]);
      const out = join(dir, "secrets.json");
      const first = spawnTool(["--inventory", inventory, "--out", out, "--timeout", "60", ...ROOMY_FLAG], dir);
      await until("the first run's lock", async () => (await readFile(`${out}.lock`, "utf8").catch(() => "")).startsWith(`${first.child.pid}\n`));
      const second = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
      expect(second.code).toBe(2);
      expect(second.stderr).toBe(
        `provision: ${out}.lock says process ${first.child.pid} is provisioning with the same output file; wait for it, or remove the lock if that process is not ours\n`,
      );
      first.child.kill("SIGKILL");
      await first.exited;
    } finally {
      device.close();
    }
  });

  it("started at the same instant, exactly one takes the lock", async () => {
    const dir = await tempDir();
    const device = await silentDevice();
    try {
      const inventory = await writeInventory(dir, [`127.0.0.1:${device.port}`]);
      const out = join(dir, "secrets.json");
      const runs = Array.from({ length: 4 }, () => spawnTool(["--inventory", inventory, "--out", out, "--timeout", "60", ...ROOMY_FLAG], dir));
      // The refused ones exit at once; the holder sits waiting for the device.
      await new Promise((done) => setTimeout(done, 3_000));
      const exited = runs.filter((r) => r.child.exitCode !== null);
      expect(exited).toHaveLength(3);
      for (const r of exited) expect((await r.exited).stderr).toMatch(/^provision: .*secrets\.json\.lock (says process \d+ is provisioning|exists but names no process yet)/);
      for (const r of runs) r.child.kill("SIGKILL");
      await Promise.all(runs.map((r) => r.exited));
    } finally {
      device.close();
    }
  });

  it("a lock file that exists but is still empty (its owner is writing it) is not taken", async () => {
    const dir = await tempDir();
    const [ts] = await startFleet(1);
    const inventory = await writeInventory(dir, [hostOf(ts!)]);
    const out = join(dir, "secrets.json");
    await writeFile(`${out}.lock`, "");
    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${out}.lock exists but names no process yet`);
    expect(existsSync(out)).toBe(false);
    expect((await call(ts!, "GET", "/api/v1/apikeys/keys/1/rd", { rd: "rdKey2" })).json?.data).toBe("rdKey2");
  });
});

describe.skipIf(lacks(IS_ROOT))("files planted in the output folder (run as root)", () => {
  /** Runs the tool on one factory device, expecting a refusal that names `message`; the device keeps its factory keys. */
  async function refused(dir: string, out: string, message: string): Promise<void> {
    const [ts] = await startFleet(1);
    const inventory = await writeInventory(await tempDir(), [hostOf(ts!)]);
    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 2, stdout: "" });
    expect(run.stderr).toContain(message);
    expect((await call(ts!, "GET", "/api/v1/apikeys/keys/1/rd", { rd: "rdKey2" })).json?.data).toBe("rdKey2");
  }

  it("refuses a journal another user created, and writes no key into it", async () => {
    const dir = await tempDir();
    await chmod(dir, 0o1777); // a shared folder, like /tmp
    const out = join(dir, "secrets.json");
    await writeFile(`${out}.journal`, "", { mode: 0o600 });
    await chown(`${out}.journal`, OTHER_UID, OTHER_UID);
    await refused(dir, out, `the journal ${out}.journal belongs to user id ${OTHER_UID}, not to you (0)`);
    expect(await readFile(`${out}.journal`, "utf8")).toBe("");
    expect((await stat(`${out}.journal`)).uid).toBe(OTHER_UID);
  });

  it("refuses a journal with a second name (hard link) and one that is a symlink", async () => {
    const dir = await tempDir();
    const out = join(dir, "secrets.json");
    const elsewhere = await tempDir();
    await writeFile(`${out}.journal`, "", { mode: 0o600 });
    await link(`${out}.journal`, join(elsewhere, "copy"));
    await refused(dir, out, `the journal ${out}.journal has 2 hard links`);
    expect(await readFile(join(elsewhere, "copy"), "utf8")).toBe("");

    const dir2 = await tempDir();
    const out2 = join(dir2, "secrets.json");
    await writeFile(join(elsewhere, "target"), "");
    await symlink(join(elsewhere, "target"), `${out2}.journal`);
    await refused(dir2, out2, `the journal ${out2}.journal is a symbolic link`);
    expect(await readFile(join(elsewhere, "target"), "utf8")).toBe("");
  });

  it("refuses an output file that is a symlink, has another name, is another user's, or is writable by others", async () => {
    const elsewhere = await tempDir();
    const cases: Array<{ plant(out: string): Promise<void>; message: string }> = [
      { plant: (out) => symlink(join(elsewhere, "target"), out), message: "is a symbolic link" },
      { plant: async (out) => (await writeFile(out, "{}", { mode: 0o600 }), link(out, join(elsewhere, `copy${Math.random()}`))), message: "has 2 hard links" },
      { plant: async (out) => (await writeFile(out, "{}", { mode: 0o600 }), chown(out, OTHER_UID, OTHER_UID)), message: `belongs to user id ${OTHER_UID}` },
      { plant: async (out) => (await writeFile(out, "{}"), chmod(out, 0o666)), message: "is writable by its group and others (mode 666)" },
    ];
    await writeFile(join(elsewhere, "target"), "{}");
    for (const { plant, message } of cases) {
      const dir = await tempDir();
      const out = join(dir, "secrets.json");
      await plant(out);
      await refused(dir, out, `the output file ${out} ${message}`);
    }
    expect(await readFile(join(elsewhere, "target"), "utf8")).toBe("{}");
  });

  it("refuses a folder others can write to unless it is sticky, and one another user owns", async () => {
    const dir = await tempDir();
    await chmod(dir, 0o777);
    await refused(dir, join(dir, "secrets.json"), `the output folder ${dir} is writable by its group and others (mode 777) and not sticky`);
    const theirs = await tempDir();
    await chown(theirs, OTHER_UID, OTHER_UID);
    await refused(theirs, join(theirs, "secrets.json"), `the output folder ${theirs} belongs to user id ${OTHER_UID}`);
    expect(existsSync(join(dir, "secrets.json.lock"))).toBe(false);
  });

  it("works in a sticky folder others can write to (like /tmp) when the files are its own", async () => {
    const dir = await tempDir();
    await chmod(dir, 0o1777);
    const [ts] = await startFleet(1);
    const inventory = await writeInventory(dir, [hostOf(ts!)]);
    const out = join(dir, "secrets.json");
    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code).toBe(0);
    await expectDeviceHolds(ts!, (await readSecrets(out))[hostOf(ts!)]);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
  });
});

describe("the journal during a run", () => {
  const intent: Intent = { host: "10.0.0.1", endpoint: "data", oldRd: "a", oldWr: "b", newRd: "c", newWr: "d" };

  it("is created exclusively: a file planted at its name after it was found missing gets no key", async () => {
    const dir = await tempDir();
    const path = join(dir, "secrets.json.journal");
    const journal = new Journal(path, await readJournal(path));
    await writeFile(path, "");
    await expect(journal.append(intent)).rejects.toThrow(UnsafeFileError);
    await journal.close();
    expect(await readFile(path, "utf8")).toBe("");
  });

  it("is appended to only while it is the file that was read: one swapped in gets no key", async () => {
    const dir = await tempDir();
    const path = join(dir, "secrets.json.journal");
    await writeFile(path, JSON.stringify(intent) + "\n", { mode: 0o600 });
    const journal = new Journal(path, await readJournal(path));
    await writeFile(join(dir, "swapped"), "", { mode: 0o600 });
    await rename(join(dir, "swapped"), path);
    await expect(journal.append(intent)).rejects.toThrow("was replaced by another file during the run");
    await journal.close();
    expect(await readFile(path, "utf8")).toBe("");
  });
});

describe("writeFileDurably's temporary file (shared with the server)", () => {
  it("is created exclusively: a symlink planted at its name is not written through", async () => {
    const dir = await tempDir();
    const target = join(await tempDir(), "target");
    await writeFile(target, "untouched");
    // The name the next write will use: pid and a sequence number. Plant links for the next few.
    const seen = new Set<string>();
    const fs = {
      ...NODE_FS,
      open: async (path: string, flags: string, mode?: number) => {
        if (flags === "wx" && !seen.has(path)) {
          seen.add(path);
          await symlink(target, path);
        }
        return NODE_FS.open(path, flags, mode);
      },
    };
    await expect(writeFileDurably(fs, dir, "secrets.json", "KEYS")).rejects.toMatchObject({ code: "EEXIST" });
    expect(await readFile(target, "utf8")).toBe("untouched");
    expect(existsSync(join(dir, "secrets.json"))).toBe(false);
  });
});

describe("pair names a device chooses", () => {
  it('records a pair named "__proto__" like any other, and prints an escape-sequence name escaped', async () => {
    // The server's loader accepts any non-empty pair name in its state: a device with these names is a real server.
    const stateDir = await tempDir("apikeyd-state-");
    const factory = JSON.parse(await readFile(join(CONFIG_DIR, "apikeys.json"), "utf8")) as { keys: Array<Record<string, unknown>> };
    const template = factory.keys[0] as Record<string, unknown>;
    const odd = ["__proto__", "\x1b[2J\x1b]0;pwned\x07", "right\u202etxt.exe", "constructor"];
    factory.keys.push(...odd.map((name, i) => ({ ...template, name, rd: `oddRd${i}`, wr: `oddWr${i}` })));
    await mkdir(stateDir, { recursive: true });
    await writeFile(join(stateDir, "apikeys.json"), JSON.stringify(factory));
    const ts = await startServer({ stateDir, server: { throttle: ROOMY_THROTTLE } });
    const before = (await call(ts, "GET", "/api/v1/apikeys", { rd: "rdKey2" })).json?.data as { keys: Array<{ name: string }> };
    expect(before.keys.map((p) => p.name)).toEqual([...Object.keys(FACTORY), ...odd]);

    const dir = await tempDir();
    const inventory = await writeInventory(dir, [hostOf(ts)]);
    const out = join(dir, "secrets.json");
    const run = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("1 device: 1 provisioned now, 0 already provisioned, 0 failed; 11 pairs got new keys.");
    // Nothing a device named reaches the terminal raw.
    expect(run.stdout + run.stderr).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/);
    expect(run.stderr).toContain("\\u001b[2J\\u001b]0;pwned\\u0007: new keys work");
    expect(run.stderr).toContain("right\\u202etxt.exe: new keys work");

    const text = await readFile(out, "utf8");
    const secrets = JSON.parse(text) as Record<string, Record<string, { rd: string; wr: string }>>;
    const entry = secrets[hostOf(ts)] as Record<string, { rd: string; wr: string }>;
    expect(Object.keys(entry).sort()).toEqual([...Object.keys(FACTORY), ...odd].sort());
    const now = (await call(ts, "GET", "/api/v1/apikeys", { rd: entry["apikeys"]!.rd })).json?.data as { keys: Array<{ name: string; rd: string; wr: string }> };
    for (const pair of now.keys) {
      expect(Object.hasOwn(entry, pair.name), pair.name).toBe(true);
      expect(entry[pair.name]).toEqual({ rd: pair.rd, wr: pair.wr });
    }
    expect(existsSync(`${out}.journal`)).toBe(false);

    // A second run reads the "__proto__" entry back and finds nothing to do.
    const again = await runTool(["--inventory", inventory, "--out", out, ...ROOMY_FLAG], dir);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("1 device: 0 provisioned now, 1 already provisioned, 0 failed; 0 pairs got new keys.");
    expect(await readFile(out, "utf8")).toBe(text);
  });
});
