/**
 * One owner at a time for a state folder: the running server, or an offline command that changes
 * state (`keys set`, `reset`). The server holds its documents in memory and writes whole files, so
 * a file changed under it would be overwritten by its next write; the lock makes that impossible
 * instead of unlikely. The owner's pid sits in `<state>/apikeyd.pid` (src/common/pid-lock.ts, the
 * lock the provisioning tool uses too), which a crash leaves behind: a lock whose process is gone
 * (or is another process that reused the pid) is taken over.
 */

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { LockHeldError, lockOwner, takePidLock, UNSETTLED_MS, type LockOwner } from "../common/pid-lock.ts";

export type { LockOwner } from "../common/pid-lock.ts";

/** The lock file's name inside the state folder. */
export const LOCK_FILE = "apikeyd.pid";

/** Another live process owns the state folder. */
export class LockedError extends Error {
  override name = "LockedError";
  constructor(
    readonly stateDir: string,
    readonly owner: LockOwner,
  ) {
    // owner.role is a known role or already escaped (pid-lock.ts describeRole): safe to print.
    super(`the state folder ${stateDir} is in use by apikeyd ${owner.role} (pid ${owner.pid})`);
  }
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
  // A lock file that does not read as one (yet) is either being taken by other code or the torn
  // leftover of a power cut; it settles either way within UNSETTLED_MS, so wait for that.
  const deadline = Date.now() + UNSETTLED_MS + 1_000;
  for (;;) {
    try {
      return takePidLock(path, role);
    } catch (error) {
      if (!(error instanceof LockHeldError)) throw error;
      if (error.owner !== undefined) throw new LockedError(stateDir, error.owner);
      if (Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The live owner of a state folder, or undefined when nobody (alive) holds it. Read-only. */
export async function stateFolderOwner(stateDir: string): Promise<LockOwner | undefined> {
  try {
    return lockOwner(join(stateDir, LOCK_FILE));
  } catch {
    return undefined; // unreadable to us: nothing to report
  }
}
