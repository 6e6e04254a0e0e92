/**
 * The state folder's own rules (docs/api.md §6, docs/security.md): who may own it and its files,
 * their modes, what a crash leaves behind. One inspection serves the start (which refuses, repairs
 * and warns) and `check` (which reports the same findings and changes nothing).
 */

import { closeSync, constants, fchmodSync, lstatSync, mkdirSync, openSync, readdirSync, unlinkSync, type Stats } from "node:fs";
import { dirname, join } from "node:path";
import { StartupError, ENDPOINT_FILE } from "./device.ts";
import { isTempFileName, syncFolder, type StoreFs } from "./store.ts";

/** A state file's owner and mode, for `check`'s report. */
export interface StateFileInfo {
  readonly path: string;
  readonly uid: number;
  readonly mode: number;
}

/** What an inspection found. */
export interface FolderFindings {
  /** What a start refuses to run with (and `check` calls a problem). */
  readonly refusals: readonly string[];
  /** State files readable by others: a start makes them 0600. */
  readonly tooOpen: readonly StateFileInfo[];
  /** Temporary files left by an interrupted write: a start removes them. */
  readonly temps: readonly string[];
  /** State files of endpoints no longer configured: left alone, named in a warning. */
  readonly strays: readonly string[];
  /** Every state file of a configured endpoint that is there. */
  readonly files: readonly StateFileInfo[];
}

/**
 * Inspects an existing state folder without changing it: the folder and every state file must
 * belong to this process's user and must not be writable by group or others (whoever can write
 * them can set the keys), and a state file must be a plain file, not a link.
 */
export async function inspectStateFolder(stateDir: string, endpoints: ReadonlySet<string>): Promise<FolderFindings> {
  const refusals: string[] = [];
  // Synchronous, as the start's other reads (config-folder.ts says why).
  const folder = lstatSync(stateDir);
  refusals.push(...ownershipProblems(`state folder ${stateDir}`, folder));
  let names: string[];
  try {
    names = readdirSync(stateDir).sort();
  } catch (error) {
    throw new StartupError(`state folder ${stateDir}: cannot be read (${(error as NodeJS.ErrnoException).code})`);
  }
  const tooOpen: StateFileInfo[] = [];
  const temps: string[] = [];
  const strays: string[] = [];
  const files: StateFileInfo[] = [];
  for (const name of names) {
    const path = join(stateDir, name);
    if (isTempFileName(name)) {
      temps.push(path);
      continue;
    }
    const endpoint = ENDPOINT_FILE.exec(name)?.[1];
    if (endpoint === undefined) continue;
    if (!endpoints.has(endpoint)) {
      strays.push(path);
      continue;
    }
    const stats = lstatSync(path);
    if (stats.isSymbolicLink()) continue; // reading it refuses it, naming the file (state-file.ts)
    const info = { path, uid: stats.uid, mode: stats.mode & 0o7777 };
    files.push(info);
    const problems = ownershipProblems(path, stats);
    refusals.push(...problems);
    if (problems.length === 0 && (stats.mode & 0o077) !== 0) tooOpen.push(info);
  }
  return { refusals, tooOpen, temps, strays, files };
}

/** Why a folder or file cannot be trusted with the device's keys, if it cannot. */
function ownershipProblems(what: string, stats: Stats): string[] {
  const uid = process.getuid?.();
  const problems: string[] = [];
  if (uid !== undefined && stats.uid !== uid) {
    problems.push(`${what}: belongs to user id ${stats.uid}, not to the user the server runs as (${uid}); chown it to that user`);
  }
  // A sticky folder (like /tmp) still lets others create names in it: refused all the same.
  if ((stats.mode & 0o022) !== 0) {
    problems.push(`${what}: writable by ${(stats.mode & 0o020) !== 0 ? "its group" : "others"} (mode ${(stats.mode & 0o777).toString(8)}); chmod go-w it`);
  }
  return problems;
}

/**
 * Makes the state folder ready for a start: created (0700, and flushed into its parent) when it
 * does not exist, refused when it cannot be trusted, then repaired: temp files removed, state files
 * readable by others made 0600 (through an opened descriptor, never following a link).
 */
export async function prepareStateFolder(stateDir: string, endpoints: ReadonlySet<string>, fs: StoreFs, warn: (message: string) => void): Promise<void> {
  try {
    // A folder made now is flushed into its parent, or a power cut could lose it with every file in it.
    const created = mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    if (created !== undefined) await syncFolder(fs, dirname(created));
  } catch (error) {
    throw new StartupError(`state folder ${stateDir}: cannot be created (${(error as NodeJS.ErrnoException).code})`);
  }
  const findings = await inspectStateFolder(stateDir, endpoints);
  if (findings.refusals.length > 0) throw new StartupError(findings.refusals.join("\n"));
  // Left by a write that a crash interrupted; the real file is intact beside it.
  for (const temp of findings.temps) {
    try {
      unlinkSync(temp);
    } catch {
      // Already gone.
    }
  }
  for (const stray of findings.strays) warn(`state file ${stray} belongs to no configured endpoint; left alone`);
  for (const file of findings.tooOpen) {
    await makePrivate(file.path);
    warn(`${file.path} was readable by others (mode ${(file.mode & 0o777).toString(8)}); set to 600`);
  }
}

/** chmod 600 through a descriptor opened without following links; a refusal names the file. */
async function makePrivate(path: string): Promise<void> {
  try {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      fchmodSync(fd, 0o600);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new StartupError(`${path}: readable by others, and cannot be made private (${code}); chmod 600 it as its owner`);
  }
}
