/**
 * One owner at a time for a state folder: the running server, or an offline command that changes
 * state (`keys set`, `reset`). The server holds its documents in memory and writes whole files, so
 * a file changed under it would be overwritten by its next write; the lock makes that impossible
 * instead of unlikely. The owner's pid sits in `<state>/apikeyd.pid`, which a crash leaves behind:
 * a lock whose process is gone (or is another process that reused the pid) is taken over.
 */

import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** The lock file's name inside the state folder. */
export const LOCK_FILE = "apikeyd.pid";

/** Another live process owns the state folder. */
export class LockedError extends Error {
  override name = "LockedError";
  constructor(
    readonly stateDir: string,
    readonly owner: LockOwner,
  ) {
    super(`the state folder ${stateDir} is in use by apikeyd ${owner.role} (pid ${owner.pid})`);
  }
}

/** Who holds a lock: pid, start time (Linux, tells a reused pid apart) and what it is doing. */
export interface LockOwner {
  readonly pid: number;
  readonly startTime: string;
  readonly role: string;
}

/** A lock held by this process. */
export interface StateLock {
  /** Gives the folder back (synchronous, so that it can run right before process.exit). */
  release(): void;
}

/**
 * Takes the state folder for `role` ("serve", "keys set", "reset"), creating the folder (0700)
 * when it does not exist. Throws LockedError when a live process holds it.
 */
export async function lockStateFolder(stateDir: string, role: string): Promise<StateLock> {
  // Synchronous calls: the lock is taken before anything else runs, and as thread-pool round trips
  // they took about 3 ms of the server's start to listening (`npm run bench`).
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, LOCK_FILE);
  const me: LockOwner = { pid: process.pid, startTime: processStartTime(process.pid) ?? "-", role };
  const text = `${me.pid}\n${me.startTime}\n${me.role}\n`;
  // Written whole under a temporary name, then linked into place: link() fails if the lock exists,
  // and nobody ever sees a lock file without its content.
  const temp = join(stateDir, `.${LOCK_FILE}.${process.pid}.tmp`);
  writeFileSync(temp, text, { mode: 0o644 });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(temp, path);
        return {
          release() {
            try {
              if (readFileSync(path, "utf8") === text) unlinkSync(path);
            } catch {
              // Already gone: nothing to give back.
            }
          },
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const owner = await readLock(stateDir);
      if (owner !== undefined && isAlive(owner)) throw new LockedError(stateDir, owner);
      unlinkQuietly(path); // stale: its process is gone
    }
    throw new Error(`${path}: cannot take the lock (it keeps reappearing)`);
  } finally {
    unlinkQuietly(temp);
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

/** The live owner of a state folder, or undefined when nobody (alive) holds it. Read-only. */
export async function stateFolderOwner(stateDir: string): Promise<LockOwner | undefined> {
  const owner = await readLock(stateDir);
  return owner !== undefined && isAlive(owner) ? owner : undefined;
}

async function readLock(stateDir: string): Promise<LockOwner | undefined> {
  let text: string;
  try {
    text = await readFile(join(stateDir, LOCK_FILE), "utf8");
  } catch {
    return undefined;
  }
  const [pidText = "", startTime = "-", role = "?"] = text.split("\n");
  const pid = Number(pidText);
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, startTime, role } : undefined;
}

function isAlive(owner: LockOwner): boolean {
  if (owner.pid === process.pid) return false; // a lock left by an earlier process that had our pid
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: the process exists under another user (the service's), so it is alive.
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  const stat = procStat(owner.pid);
  if (stat === undefined) return true; // no /proc: the signal's answer is all there is
  // A zombie (killed, not yet reaped by its parent) holds nothing any more.
  if (stat[0] === "Z" || stat[0] === "X") return false;
  return owner.startTime === "-" || stat[19] === owner.startTime;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), where /proc exists. */
function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

/** The fields of /proc/<pid>/stat from the third (state) on, or undefined without /proc. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}
