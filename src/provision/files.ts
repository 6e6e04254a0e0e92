/** The tool's files on disk: durable atomic replacement, and the lock that keeps two runs apart. */

import * as fsp from "node:fs/promises";
import { basename, dirname, join } from "node:path";

let tempSequence = 0;

/**
 * Replaces `path` with `text`, mode 0600, so that a crash or power cut at any instant leaves the
 * old file or the new one, never a torn one: temporary file, fsync, rename over, fsync the folder.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}-${++tempSequence}.tmp`);
  let renamed = false;
  try {
    const handle = await fsp.open(temp, "wx", 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, path);
    renamed = true;
    await syncFolder(dir);
  } finally {
    if (!renamed) await fsp.unlink(temp).catch(() => undefined);
  }
}

/** Flushes a folder's entries (a rename, a new or removed file) to the disk. */
export async function syncFolder(dir: string): Promise<void> {
  const handle = await fsp.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Another run holds the lock. */
export class LockError extends Error {
  override name = "LockError";
}

/**
 * Takes `path` as a lock holding our pid. A lock left by a run that no longer exists (killed) is
 * taken over; one held by a live process is refused, since two runs sharing a journal and an
 * output file could each overwrite the other's keys.
 */
export async function acquireLock(path: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await fsp.open(path, "wx", 0o600);
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      return () => fsp.unlink(path).catch(() => undefined);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const pid = Number((await fsp.readFile(path, "utf8").catch(() => "")).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new LockError(`${path} says process ${pid} is provisioning with the same output file; wait for it, or remove the lock if that process is not ours`);
    }
    await fsp.unlink(path).catch(() => undefined);
  }
  throw new LockError(`could not take the lock ${path}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
