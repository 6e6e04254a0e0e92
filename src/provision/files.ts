/**
 * The provisioning tool's files and what it trusts about them. The output file and its journal
 * hold every key, and the tool may run as root with --out in a folder others can write to: so it
 * never writes keys through a symlink, into a file with other names (hard links), into a file
 * someone else owns or may write, or into a folder where someone else could swap the files. New
 * files are created exclusively (O_EXCL | O_NOFOLLOW, 0600). The lock keeping two runs apart is
 * src/common/pid-lock.ts; durable whole-file writes are src/state/store.ts's writeFileDurably.
 */

import { constants, type Stats } from "node:fs";
import * as fsp from "node:fs/promises";
import { LockHeldError, takePidLock, type PidLock } from "../common/pid-lock.ts";
import { printable } from "../common/printable.ts";

/** Another run holds the lock. */
export class LockError extends Error {
  override name = "LockError";
}

/** A file or folder the tool will not trust with keys; the message says why and how to fix it. */
export class UnsafeFileError extends Error {
  override name = "UnsafeFileError";
}

/**
 * Takes `path` as the run's lock. A lock left by a run that no longer exists (killed) is taken
 * over; one held by a live process is refused, since two runs sharing a journal and an output
 * file could each overwrite the other's keys.
 */
export function acquireLock(path: string): PidLock {
  try {
    return takePidLock(path, "provision");
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    if (error.owner === undefined) {
      throw new LockError(`${path} exists but names no process yet: another run is starting with the same output file; wait for it, or remove the lock if no other run is going`);
    }
    const who = error.owner.role === "provision" ? `process ${error.owner.pid} is provisioning` : `process ${error.owner.pid} (${error.owner.role}) holds it`;
    throw new LockError(`${path} says ${who} with the same output file; wait for it, or remove the lock if that process is not ours`);
  }
}

const STICKY = 0o1000;

const me = (): number | undefined => process.geteuid?.();

/**
 * Refuses an output folder in which someone else could replace or plant files: one writable by
 * group or others without the sticky bit (/tmp has it: there, only a file's owner may rename or
 * remove it), or one owned by another user (its owner may always do so).
 */
export async function checkOutputFolder(dir: string): Promise<void> {
  const st = await fsp.stat(dir);
  const uid = me();
  if (uid === undefined) return; // no uids on this platform
  const shown = printable(dir);
  if (st.uid !== uid && st.uid !== 0) {
    throw new UnsafeFileError(`the output folder ${shown} belongs to user id ${st.uid}, who could replace the files in it; use a folder that belongs to you (user id ${uid}) or to root`);
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & STICKY) === 0) {
    throw new UnsafeFileError(
      `the output folder ${shown} is writable by ${writers(st.mode)} (mode ${(st.mode & 0o7777).toString(8)}) and not sticky, so they could replace the files in it; ` +
        `use a folder only you can write to (or chmod go-w it)`,
    );
  }
}

function writers(mode: number): string {
  return (mode & 0o020) !== 0 && (mode & 0o002) !== 0 ? "its group and others" : (mode & 0o020) !== 0 ? "its group" : "others";
}

/** Throws unless `st` is a plain file of ours that nobody else can write to or reach by another name. */
export function checkOwnFile(path: string, st: Stats, what: string): void {
  const shown = printable(path);
  if (!st.isFile()) throw new UnsafeFileError(`the ${what} ${shown} is not a regular file; move it away`);
  const uid = me();
  if (uid !== undefined && st.uid !== uid) {
    throw new UnsafeFileError(`the ${what} ${shown} belongs to user id ${st.uid}, not to you (${uid}); refusing to put keys in a file another user controls (check what it holds, then move it away)`);
  }
  if (st.nlink > 1) {
    throw new UnsafeFileError(`the ${what} ${shown} has ${st.nlink} hard links (other names for the same file, which may be readable by others); refusing to put keys in it (check the other names, then make it a single copy: cp -p FILE FILE.new && mv FILE.new FILE)`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new UnsafeFileError(`the ${what} ${shown} is writable by ${writers(st.mode)} (mode ${(st.mode & 0o777).toString(8)}); refusing to trust it (check what it holds, then chmod 600 it)`);
  }
}

/**
 * Opens an existing file of ours for reading, never through a symlink, and checks it
 * (checkOwnFile); undefined when there is no such file.
 */
export async function openOwnFile(path: string, what: string): Promise<{ handle: fsp.FileHandle; stat: Stats } | undefined> {
  let handle: fsp.FileHandle;
  try {
    // O_NONBLOCK: a FIFO planted at the name must not hang the run before it is refused.
    handle = await fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ELOOP") throw new UnsafeFileError(`the ${what} ${printable(path)} is a symbolic link; refusing to read or write keys through it (remove the link, or give the real path)`);
    throw error;
  }
  try {
    const stat = await handle.stat();
    checkOwnFile(path, stat, what);
    return { handle, stat };
  } catch (error) {
    await handle.close();
    throw error;
  }
}
