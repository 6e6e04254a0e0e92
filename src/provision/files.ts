/** The lock that keeps two runs of the tool apart. (Durable file writes are src/state/store.ts's writeFileDurably.) */

import * as fsp from "node:fs/promises";

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
