/**
 * The one lock (src/common/pid-lock.ts) that the server's state folder and the provisioning tool's
 * output file share: taken whole or not at all, a lock still being written is not taken, stale
 * ones are, only our own is given back, and a role read from a lock file is never printed raw.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, readdir, readFile, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { describeRole, LockHeldError, lockOwner, takePidLock } from "../src/common/pid-lock.ts";
import { printable } from "../src/common/printable.ts";
import { LockedError, lockStateFolder } from "../src/state/state-lock.ts";
import { cleanup, tempDir } from "./helpers.ts";

const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  await cleanup();
});

/** A live process that is not us, and its /proc start time. */
function liveOther(): { pid: number; startTime: string } {
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60_000)"], { stdio: "ignore" });
  children.push(child);
  const pid = child.pid as number;
  const stat = spawnSync("cat", [`/proc/${pid}/stat`], { encoding: "utf8" }).stdout;
  return { pid, startTime: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] as string };
}

/** The pid of a process that has exited. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout);
}

describe("the pid lock", () => {
  it("is written whole (0600, no temporary file left), read back, and given back only by its owner", async () => {
    const dir = await tempDir();
    const path = join(dir, "out.lock");
    const lock = takePidLock(path, "provision");
    const text = await readFile(path, "utf8");
    expect(text).toMatch(new RegExp(`^${process.pid}\\n(\\d+|-)\\nprovision\\n$`));
    expect((await lstat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(["out.lock"]);
    // Our own pid reads as "an earlier process that had our pid": not alive, so not an owner.
    expect(lockOwner(path)).toBeUndefined();

    // Taken over (as a stale lock would be) by someone else: release leaves their lock alone.
    const other = liveOther();
    await writeFile(join(dir, "theirs"), `${other.pid}\n${other.startTime}\nserve\n`);
    await import("node:fs/promises").then((fs) => fs.rename(join(dir, "theirs"), path));
    lock.release();
    expect(existsSync(path)).toBe(true);
    expect(lockOwner(path)).toEqual({ pid: other.pid, startTime: other.startTime, role: "serve" });
    expect(() => takePidLock(path, "provision")).toThrow(LockHeldError);
  });

  it("is not taken while its file exists but is still empty (being written), and is once that is old", async () => {
    const dir = await tempDir();
    const path = join(dir, "out.lock");
    await writeFile(path, "");
    let refusal: unknown;
    try {
      takePidLock(path, "provision");
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(LockHeldError);
    expect((refusal as LockHeldError).owner).toBeUndefined();
    expect(await readFile(path, "utf8")).toBe("");
    for (const torn of [`${process.pid}`, `${process.pid}\n12`, "0\n-\nserve\n"]) {
      await writeFile(path, torn);
      expect(() => takePidLock(path, "provision"), JSON.stringify(torn)).toThrow(LockHeldError);
    }

    // A minute old and still not a lock: a crash's leftover, taken over.
    const old = new Date(Date.now() - 60_000);
    await utimes(path, old, old);
    const lock = takePidLock(path, "provision");
    expect(await readFile(path, "utf8")).toContain("\nprovision\n");
    lock.release();
    expect(existsSync(path)).toBe(false);
  });

  it("takes over the lock of a dead process, and of a live one whose start time differs (a reused pid)", async () => {
    const dir = await tempDir();
    const path = join(dir, "apikeyd.pid");
    await writeFile(path, `${deadPid()}\n-\nserve\n`);
    takePidLock(path, "reset").release();
    const other = liveOther();
    await writeFile(path, `${other.pid}\n1\nserve\n`);
    takePidLock(path, "reset").release();
    await writeFile(path, `${other.pid}\n${other.startTime}\nserve\n`);
    expect(() => takePidLock(path, "reset")).toThrow(`${path} is held by serve (pid ${other.pid})`);
  });

  it("never follows a symlink at the lock's name: the link is removed, its target untouched", async () => {
    const dir = await tempDir();
    const target = join(dir, "precious");
    await writeFile(target, "do not touch\n");
    const path = join(dir, "out.lock");
    await symlink(target, path);
    const lock = takePidLock(path, "provision");
    expect((await lstat(path)).isFile()).toBe(true);
    expect(await readFile(target, "utf8")).toBe("do not touch\n");
    lock.release();
  });

  it("shows a role it does not know escaped, never raw", async () => {
    expect(describeRole("serve")).toBe("serve");
    expect(describeRole("keys set")).toBe("keys set");
    expect(describeRole("\x1b[2J\x1b]0;owned\x07")).toBe('(unknown role "\\u001b[2J\\u001b]0;owned\\u0007")');
    expect(describeRole("a\u202eb\u0085c\u2066")).toBe('(unknown role "a\\u202eb\\u0085c\\u2066")');
    const dir = await tempDir();
    const other = liveOther();
    await writeFile(join(dir, "apikeyd.pid"), `${other.pid}\n${other.startTime}\n\x1b[2Jevil\n`);
    const refusal = await lockStateFolder(dir, "reset").then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(LockedError);
    expect((refusal as Error).message).toBe(`the state folder ${dir} is in use by apikeyd (unknown role "\\u001b[2Jevil") (pid ${other.pid})`);
    expect(printable((refusal as Error).message)).toBe((refusal as Error).message);
  });
});

describe("the state folder's lock", () => {
  it("waits while apikeyd.pid exists but is empty (being written), then honours the owner it names", async () => {
    const stateDir = await tempDir("apikeyd-state-");
    const path = join(stateDir, "apikeyd.pid");
    await writeFile(path, "");
    let settled: unknown = "pending";
    const taking = lockStateFolder(stateDir, "keys set").then(
      (lock) => (settled = lock),
      (error: unknown) => (settled = error),
    );
    await new Promise((done) => setTimeout(done, 500));
    expect(settled).toBe("pending");
    const other = liveOther();
    await writeFile(path, `${other.pid}\n${other.startTime}\nserve\n`);
    await taking;
    expect(settled).toBeInstanceOf(LockedError);
    expect((settled as LockedError).message).toBe(`the state folder ${stateDir} is in use by apikeyd serve (pid ${other.pid})`);
  });
});
