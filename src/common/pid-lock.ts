/**
 * The one lock implementation: a file holding its owner's pid, start time and role, used for the
 * server's state folder (`apikeyd.pid`) and for the provisioning tool's output file (`<out>.lock`).
 *
 * Taking it: the content is written whole to a temporary file created exclusively (O_EXCL |
 * O_NOFOLLOW, mode 0600, a random name, so neither a planted file nor a symlink is ever written
 * through), then link()ed to the lock's name. link() fails when the name exists, and nobody ever
 * sees a lock file without its content. A lock whose owner is gone (no such process, a zombie, or
 * another process that reused the pid, told apart by its start time in /proc) is taken over.
 * A lock file that does not read as a lock (empty, torn) is someone else's lock being written by
 * other code, or damaged: it counts as held while it is young, as stale once it is old.
 */

import { closeSync, constants, fstatSync, linkSync, lstatSync, openSync, readFileSync, readSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { printable } from "./printable.ts";

/** Who holds a lock: pid, start time (Linux, tells a reused pid apart) and what it is doing. */
export interface LockOwner {
  readonly pid: number;
  readonly startTime: string;
  /** One of KNOWN_ROLES, or a description of an unknown role with its text escaped (it came from a file). */
  readonly role: string;
}

/** The roles this code writes into locks; any other role text read back is shown escaped. */
export const KNOWN_ROLES: ReadonlySet<string> = new Set(["serve", "keys set", "reset", "provision"]);

/**
 * How long a lock file that does not read as a lock counts as "being written" (held) before it is
 * taken for the leftover of a crash or a power cut.
 */
export const UNSETTLED_MS = 10_000;

/** A lock held by a live process (`owner`), or (owner undefined) a lock file that does not read as one yet. */
export class LockHeldError extends Error {
  override name = "LockHeldError";
  constructor(
    readonly path: string,
    readonly owner: LockOwner | undefined,
  ) {
    super(
      owner === undefined
        ? `${path} exists but holds no owner yet (another process is taking it, or it is damaged); try again in a few seconds`
        : `${path} is held by ${owner.role} (pid ${owner.pid})`,
    );
  }
}

/** A lock this process holds. */
export interface PidLock {
  readonly path: string;
  /** Gives the lock back, if it is still ours (synchronous: it may run right before process.exit). */
  release(): void;
}

/** What is at a lock's name. */
type Found =
  | { readonly kind: "missing" }
  | { readonly kind: "held"; readonly owner: LockOwner }
  | { readonly kind: "unsettled" }
  | { readonly kind: "stale"; readonly dev: number; readonly ino: number };

const MAX_LOCK_BYTES = 512;

/** Takes the lock at `path` for `role`. Throws LockHeldError when a live process (or one just starting) holds it. */
export function takePidLock(path: string, role: string): PidLock {
  const startTime = processStartTime(process.pid) ?? "-";
  const text = `${process.pid}\n${startTime}\n${role}\n`;
  const temp = writeTempFile(path, text);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(temp.path, path);
        return ownedLock(path, temp.dev, temp.ino);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const found = inspectLock(path);
      if (found.kind === "held") throw new LockHeldError(path, found.owner);
      if (found.kind === "unsettled") throw new LockHeldError(path, undefined);
      if (found.kind === "stale") removeIfSame(path, found.dev, found.ino);
    }
    throw new Error(`${path}: cannot take the lock (it keeps reappearing)`);
  } finally {
    unlinkQuietly(temp.path);
  }
}

/** The live owner of the lock at `path`, or undefined when nobody (alive) holds it. Read-only. */
export function lockOwner(path: string): LockOwner | undefined {
  const found = inspectLock(path);
  return found.kind === "held" ? found.owner : undefined;
}

/**
 * The lock's content in a new file of its own next to it: created exclusively, never through a
 * symlink, readable by its owner only. Its name is random, and a file planted under it is never used (O_EXCL: another name is drawn).
 */
function writeTempFile(path: string, text: string): { path: string; dev: number; ino: number } {
  for (;;) {
    // The name need only be unlikely to be taken (O_EXCL refuses a taken one, O_NOFOLLOW a planted
    // link, and the loop tries another): no node:crypto here, whose loading cost every start 3 ms.
    const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
    let fd: number;
    try {
      fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") continue; // taken (or planted): draw again
      throw error;
    }
    try {
      writeSync(fd, text);
      const { dev, ino } = fstatSync(fd);
      return { path: temp, dev, ino };
    } catch (error) {
      unlinkQuietly(temp);
      throw error;
    } finally {
      closeSync(fd);
    }
  }
}

function ownedLock(path: string, dev: number, ino: number): PidLock {
  return {
    path,
    release() {
      // Only our own file: after a takeover by someone else, the name is theirs.
      removeIfSame(path, dev, ino);
    },
  };
}

/** Unlinks `path` if it is still the file (dev, ino) that was judged; the window for a swap is one system call. */
function removeIfSame(path: string, dev: number, ino: number): void {
  try {
    const now = lstatSync(path);
    if (now.dev === dev && now.ino === ino) unlinkSync(path);
  } catch {
    // Already gone.
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

/** Reads the lock at `path` without following a symlink and judges it. */
function inspectLock(path: string): Found {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted at the name must not hang us.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { kind: "missing" };
    if (code === "ELOOP") {
      // A symlink is no lock of ours: remove the link itself (never what it points to).
      const st = lstatSafe(path);
      return st === undefined ? { kind: "missing" } : { kind: "stale", dev: st.dev, ino: st.ino };
    }
    throw error;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { kind: "stale", dev: st.dev, ino: st.ino };
    const buffer = Buffer.alloc(MAX_LOCK_BYTES);
    const length = readSync(fd, buffer, 0, MAX_LOCK_BYTES, 0);
    const owner = parseLock(buffer.subarray(0, length).toString("utf8"));
    if (owner === undefined) return Date.now() - st.mtimeMs < UNSETTLED_MS ? { kind: "unsettled" } : { kind: "stale", dev: st.dev, ino: st.ino };
    return isAlive(owner) ? { kind: "held", owner } : { kind: "stale", dev: st.dev, ino: st.ino };
  } finally {
    closeSync(fd);
  }
}

function lstatSafe(path: string): { dev: number; ino: number } | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** "pid\nstartTime\nrole\n", complete; undefined for anything else (empty, torn, not ours). */
export function parseLock(text: string): LockOwner | undefined {
  const match = /^([1-9][0-9]{0,9})\n([0-9]+|-)\n([^\n]*)\n$/.exec(text);
  if (match === null) return undefined;
  const pid = Number(match[1]);
  if (!Number.isSafeInteger(pid)) return undefined;
  return { pid, startTime: match[2] as string, role: describeRole(match[3] as string) };
}

/** A role read from a file, fit to print: a known one as is, anything else escaped and marked unknown. */
export function describeRole(raw: string): string {
  if (KNOWN_ROLES.has(raw)) return raw;
  const shown = raw.length > 40 ? `${raw.slice(0, 40)}...` : raw;
  return `(unknown role "${printable(shown)}")`;
}

/** Whether the lock's owner is still the process that wrote it. */
export function isAlive(owner: Pick<LockOwner, "pid" | "startTime">): boolean {
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
export function processStartTime(pid: number): string | undefined {
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
