/**
 * A write that cannot be made durable (full disk, read-only file system, I/O error) answers
 * JSON_ERROR_STORAGE (503) and changes nothing, in memory or on disk; the server keeps serving and
 * the same write succeeds once the fault is gone, without a restart. Faults come from a
 * file-system layer that can be told to fail (always), and from a real tiny tmpfs (when we may mount).
 */

import { execFileSync } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { isTempFileName } from "../src/state/store.ts";
import { FaultFs, type Step } from "./fault-fs.ts";
import { call, cleanup, closeAgents, failure, IN_CI, ok, startServer, type TestServer, withoutDetail } from "./helpers.ts";

const STORAGE_FAILED = failure(13, "JSON_ERROR_STORAGE");
const PROPERTIES = { rd: "rdKey1", wr: "wrKey1" };
const DATA = { rd: "rdKey7", wr: "wrKey7" };

afterAll(closeAgents);

async function tempFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter(isTempFileName);
}

/** Checks that a refused write left the server, its memory and its files as they were. */
async function expectNothingChanged(ts: TestServer, before: string): Promise<void> {
  expect((await call(ts, "GET", "/api/v1/properties/name", PROPERTIES)).text).toBe(ok("eNetMini1"));
  expect(await readFile(join(ts.stateDir, "properties.json"), "utf8")).toBe(before);
  expect(await tempFiles(ts.stateDir)).toEqual([]);
  // Still serving, reads and writes that need no disk alike.
  expect((await call(ts, "GET", "/api/v1/device/0/address")).text).toBe(ok("004082ABCDEF"));
  expect((await call(ts, "PUT", "/api/v1/data/entries/1/pin", { ...DATA, body: "pin=12.5" })).text).toBe(ok(12.5));
}

describe("a write the file system refuses (injected faults)", () => {
  const CASES: ReadonlyArray<[string, Step, string]> = [
    ["full disk while writing the temporary file", "write", "ENOSPC"],
    ["full disk while flushing the temporary file", "sync", "ENOSPC"],
    ["read-only file system", "open", "EROFS"],
    ["failing rename (I/O error)", "rename", "EIO"],
    ["failing rename (read-only file system)", "rename", "EROFS"],
    ["failing folder flush, after the rename went through", "dir-sync", "EIO"],
  ];

  it.each(CASES)("%s: 503, nothing changed, and the same PUT works once the fault is gone", async (_name, step, code) => {
    const fs = faultFs();
    const ts = await startServer({ load: { fs } });
    const before = await readFile(join(ts.stateDir, "properties.json"), "utf8");

    fs.fail(step, code);
    const refused = await call(ts, "PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "name=renamed" });
    expect(refused.status).toBe(503);
    expect(withoutDetail(refused.text)).toBe(STORAGE_FAILED);
    expect(refused.headers["content-type"]).toBe("application/json");
    await expectNothingChanged(ts, before);
    // Refused again while the fault lasts: nothing was half-remembered.
    expect((await call(ts, "PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "name=renamed" })).status).toBe(503);
    await expectNothingChanged(ts, before);

    fs.clear();
    const accepted = await call(ts, "PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "name=renamed" });
    expect(accepted.status).toBe(200);
    expect(accepted.text).toBe(ok("renamed"));
    expect(JSON.parse(await readFile(join(ts.stateDir, "properties.json"), "utf8")).name).toBe("renamed");
    expect((await call(ts, "GET", "/api/v1/properties/name", PROPERTIES)).text).toBe(ok("renamed"));
    expect(await tempFiles(ts.stateDir)).toEqual([]);
  });

  it("a change staged while a failing flush runs fails with it", async () => {
    const fs = faultFs();
    const ts = await startServer({ load: { fs } });
    const before = await readFile(join(ts.stateDir, "properties.json"), "utf8");
    const docs = ts.device.endpoints.get("properties")?.docs;

    fs.hold("write");
    fs.fail("write", "ENOSPC");
    const first = call(ts, "PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "name=first" });
    await fs.whenWaiting("write", 1);
    const second = call(ts, "PUT", "/api/v1/properties/mqtt/user", { ...PROPERTIES, body: "user=second" });
    // Wait until the second change is staged on top of the first one being flushed.
    while ((docs?.latest as { mqtt: { user: string } }).mqtt.user !== "second") await new Promise((r) => setTimeout(r, 5));
    fs.release("write");

    expect(withoutDetail((await first).text)).toBe(STORAGE_FAILED);
    expect(withoutDetail((await second).text)).toBe(STORAGE_FAILED);
    await expectNothingChanged(ts, before);
    expect((await call(ts, "GET", "/api/v1/properties/mqtt/user", PROPERTIES)).text).toBe(ok("user_mqtt"));

    fs.clear();
    expect((await call(ts, "PUT", "/api/v1/properties/mqtt/user", { ...PROPERTIES, body: "user=second" })).text).toBe(ok("second"));
    const onDisk = JSON.parse(await readFile(join(ts.stateDir, "properties.json"), "utf8"));
    expect([onDisk.name, onDisk.mqtt.user]).toEqual(["eNetMini1", "second"]);
  });

  it("data: a saved output's write fails with 503 on a full disk, a live value is still answered (it needs no disk)", async () => {
    const fs = faultFs();
    const ts = await startServer({ load: { fs } });
    const before = await readFile(join(ts.stateDir, "data.json"), "utf8");
    fs.fail("write", "ENOSPC");
    fs.resetCounts();

    expect((await call(ts, "PUT", "/api/v1/data/entries/1/pin", { ...DATA, body: "pin=42" })).text).toBe(ok(42));
    expect(fs.diskCalls).toBe(0);

    // RELAY (entry 2) has save true in process: its value must be on disk before the answer.
    expect(withoutDetail((await call(ts, "PUT", "/api/v1/data/entries/2/pin", { ...DATA, body: "pin=false" })).text)).toBe(STORAGE_FAILED);
    expect((await call(ts, "GET", "/api/v1/data/entries/2/pin", DATA)).text).toBe(ok(true));
    expect(await readFile(join(ts.stateDir, "data.json"), "utf8")).toBe(before);

    fs.clear();
    expect((await call(ts, "PUT", "/api/v1/data/entries/2/pin", { ...DATA, body: "pin=false" })).text).toBe(ok(false));
    const onDisk = JSON.parse(await readFile(join(ts.stateDir, "data.json"), "utf8"));
    expect(onDisk.entries[2].pin).toBe(false);
    // The live value is not written out: the file keeps the AO's factory value.
    expect(onDisk.entries[1].pin).toBe(0.004);
  });
});

/** Mounts a tmpfs of `size` on a fresh folder, or says why it cannot (not root, no mount allowed). */
async function mountTmpfs(size: string): Promise<{ dir: string } | { reason: string }> {
  const dir = await mkdtemp(join(tmpdir(), "apikeyd-tmpfs-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir], { stdio: "pipe" });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return { reason: `cannot mount a tmpfs (${stderr || (error as Error).message}); the injected faults above cover these cases` };
  }
  mounted.push(dir);
  return { dir };
}

const mounted: string[] = [];

const fileSystems: FaultFs[] = [];

function faultFs(): FaultFs {
  const fs = new FaultFs();
  fileSystems.push(fs);
  return fs;
}

afterEach(async () => {
  // A failed test may leave a write held: let it finish so the server can stop.
  for (const fs of fileSystems.splice(0)) fs.releaseAll();
  await cleanup(); // the servers first: they hold files on the tmpfs
  for (const dir of mounted.splice(0)) {
    try {
      execFileSync("umount", [dir], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", dir], { stdio: "pipe" });
    }
    await rm(dir, { recursive: true, force: true });
  }
});

/** Fills a file system until it refuses another byte. */
function fill(path: string): void {
  const fd = openSync(path, "w");
  try {
    for (const size of [65536, 4096, 1]) {
      const chunk = Buffer.alloc(size, 0x61);
      for (;;) {
        try {
          writeSync(fd, chunk);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw error;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Skips a test that could not mount its tmpfs; under CI, where root can mount, fails it instead. */
function skipWithout(ctx: { skip: (note: string) => never }, reason: string): never {
  if (IN_CI) throw new Error(`CI needs a tmpfs mount: ${reason}`);
  console.warn(reason);
  return ctx.skip(reason);
}

describe("a real file system that is full or read-only (tmpfs)", () => {
  it("full: 503 and nothing changed; once space is freed the same PUT works without a restart", async (ctx) => {
    const mount = await mountTmpfs("256k");
    if ("reason" in mount) return skipWithout(ctx, mount.reason);
    const ts = await startServer({ stateDir: join(mount.dir, "state") });
    const before = await readFile(join(ts.stateDir, "properties.json"), "utf8");
    const filler = join(mount.dir, "filler");
    fill(filler);

    const refused = await call(ts, "PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "name=renamed" });
    expect(refused.status).toBe(503);
    expect(withoutDetail(refused.text)).toBe(STORAGE_FAILED);
    await expectNothingChanged(ts, before);

    await unlink(filler);
    expect((await call(ts, "PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "name=renamed" })).text).toBe(ok("renamed"));
    expect(JSON.parse(await readFile(join(ts.stateDir, "properties.json"), "utf8")).name).toBe("renamed");
  });

  it("read-only: 503 and nothing changed; once writable again the same PUT works without a restart", async (ctx) => {
    const mount = await mountTmpfs("256k");
    if ("reason" in mount) return skipWithout(ctx, mount.reason);
    const ts = await startServer({ stateDir: join(mount.dir, "state") });
    const before = await readFile(join(ts.stateDir, "properties.json"), "utf8");
    execFileSync("mount", ["-o", "remount,ro", mount.dir], { stdio: "pipe" });

    const refused = await call(ts, "PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "name=renamed" });
    expect(refused.status).toBe(503);
    expect(withoutDetail(refused.text)).toBe(STORAGE_FAILED);
    await expectNothingChanged(ts, before);

    execFileSync("mount", ["-o", "remount,rw", mount.dir], { stdio: "pipe" });
    expect((await call(ts, "PUT", "/api/v1/properties/name", { ...PROPERTIES, body: "name=renamed" })).text).toBe(ok("renamed"));
    expect(JSON.parse(await readFile(join(ts.stateDir, "properties.json"), "utf8")).name).toBe("renamed");
  });
});
