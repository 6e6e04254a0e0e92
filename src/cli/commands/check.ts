/**
 * `check`: everything a start would refuse, found without starting and without writing anything:
 * the config folder (parse, shape, schema, every endpoint has a pair), every state file (parse,
 * shape, keyring), the key file's mode, and the TLS files when they are configured.
 */

import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { APIKEYS_ENDPOINT, ENDPOINT_FILE, loadFactory, readStateFile, StartupError } from "../../state/device.ts";
import type { Json } from "../../state/documents.ts";
import { stateFolderOwner } from "../../state/state-lock.ts";
import { isTempFileName } from "../../state/store.ts";
import { readTlsFiles, TlsFileError } from "../../http/tls.ts";
import type { CommandIo } from "./shared.ts";

/** Prints every problem (exit 1) or OK (exit 0); notes are things a start handles by itself. */
export async function check(configDir: string, stateDir: string, tls: { cert: string; key: string } | undefined, io: CommandIo): Promise<number> {
  const problems: string[] = [];
  const notes: string[] = [];
  let loaded;
  try {
    loaded = await loadFactory(configDir);
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    problems.push(...error.message.split("\n"));
  }
  if (loaded !== undefined) {
    let present: string[] | undefined;
    try {
      present = await readdir(stateDir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") notes.push(`state folder ${stateDir} does not exist yet: the first start creates it and seeds it from ${configDir}`);
      else problems.push(`state folder ${stateDir}: cannot be read (${code})`);
    }
    if (present !== undefined) {
      for (const [name, factoryDoc] of loaded.factory) {
        const path = join(stateDir, `${name}.json`);
        const file = await readStateFile(stateDir, name, factoryDoc as Json, loaded.schema);
        if (file.status === "missing") notes.push(`${path}: missing; the next start seeds it from the factory default`);
        else if (file.status === "invalid") problems.push(...file.problems);
        else if (file.addedPairs) notes.push(`${path}: lacks the pairs of some endpoints; the next start adds their factory pairs`);
        if (file.status === "ok" && file.upgraded) notes.push(`${path}: holds older type revisions; the next start adds the new members with their factory values`);
      }
      const keyFile = await stat(join(stateDir, `${APIKEYS_ENDPOINT}.json`)).catch(() => undefined);
      if (keyFile !== undefined && (keyFile.mode & 0o077) !== 0) {
        problems.push(`${join(stateDir, `${APIKEYS_ENDPOINT}.json`)}: readable by others (mode ${(keyFile.mode & 0o777).toString(8)}); chmod 600 it`);
      }
      for (const name of present) {
        const endpoint = ENDPOINT_FILE.exec(name)?.[1];
        if (isTempFileName(name)) notes.push(`${join(stateDir, name)}: left by an interrupted write; the next start removes it`);
        else if (endpoint !== undefined && !loaded.factory.has(endpoint)) notes.push(`${join(stateDir, name)}: belongs to no configured endpoint; left alone`);
      }
      const owner = await stateFolderOwner(stateDir);
      if (owner !== undefined) notes.push(`in use by apikeyd ${owner.role} (pid ${owner.pid})`);
    }
  }
  if (tls !== undefined) {
    try {
      await readTlsFiles(tls.cert, tls.key);
    } catch (error) {
      if (!(error instanceof TlsFileError)) throw error;
      problems.push(error.message);
    }
  }
  for (const note of notes) io.out(`note: ${note}`);
  for (const problem of problems) io.out(`problem: ${problem}`);
  if (problems.length > 0) {
    io.out(`${problems.length} problem${problems.length === 1 ? "" : "s"} found`);
    return 1;
  }
  io.out(`OK: ${configDir} and ${stateDir} pass every check${loaded === undefined ? "" : ` (${loaded.factory.size} endpoints)`}`);
  return 0;
}
