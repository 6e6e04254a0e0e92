/**
 * `check`: everything a start would refuse, found without starting and without writing anything:
 * the config folder (parse, shape, schema, every endpoint has a pair), every state file (parse,
 * shape, keyring), the state folder's owner and modes (by the start's own rules: state-folder.ts),
 * and the TLS files when they are configured. It lists every state file's owner and mode.
 */

import { join } from "node:path";
import { loadFactory } from "../../state/config-folder.ts";
import { StartupError } from "../../state/device.ts";
import { readStateFile } from "../../state/state-file.ts";
import type { Json } from "../../state/documents.ts";
import { stateFolderOwner } from "../../state/state-lock.ts";
import { inspectStateFolder, type FolderFindings } from "../../state/state-folder.ts";
import { readTlsFiles, TlsFileError } from "../../http/tls.ts";
import type { CommandIo } from "./shared.ts";

/** Prints every problem (exit 1) or OK (exit 0); notes are things a start handles by itself. */
export async function check(configDir: string, stateDir: string, tls: { cert: string; key: string } | undefined, io: CommandIo): Promise<number> {
  const problems: string[] = [];
  const notes: string[] = [];
  const files: string[] = [];
  let loaded;
  try {
    loaded = await loadFactory(configDir);
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    problems.push(...error.message.split("\n"));
  }
  if (loaded !== undefined) {
    let findings: FolderFindings | undefined;
    try {
      findings = await inspectStateFolder(stateDir, new Set(loaded.factory.keys()));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") notes.push(`state folder ${stateDir} does not exist yet: the first start creates it and seeds it from ${configDir}`);
      else if (error instanceof StartupError) problems.push(error.message);
      else problems.push(`state folder ${stateDir}: cannot be read (${code})`);
    }
    if (findings !== undefined) {
      // The start's own findings: what it refuses is a problem, what it repairs by itself a note.
      problems.push(...findings.refusals);
      for (const [name, factoryDoc] of loaded.factory) {
        const path = join(stateDir, `${name}.json`);
        const file = await readStateFile(stateDir, name, factoryDoc as Json, loaded.schema);
        if (file.status === "missing") notes.push(`${path}: missing; the next start seeds it from the factory default`);
        else if (file.status === "invalid") problems.push(...file.problems);
        else if (file.addedPairs) notes.push(`${path}: lacks the pairs of some endpoints; the next start adds their factory pairs`);
        if (file.status === "ok" && file.upgraded) notes.push(`${path}: holds older type revisions; the next start adds the new members with their factory values`);
      }
      for (const file of findings.tooOpen) notes.push(`${file.path}: readable by others (mode ${(file.mode & 0o777).toString(8)}); the next start sets it to 600`);
      for (const temp of findings.temps) notes.push(`${temp}: left by an interrupted write; the next start removes it`);
      for (const stray of findings.strays) notes.push(`${stray}: belongs to no configured endpoint; left alone`);
      for (const file of findings.files) files.push(`${file.path}: owner ${file.uid}, mode ${(file.mode & 0o777).toString(8)}`);
      const owner = await stateFolderOwner(stateDir);
      if (owner !== undefined) notes.push(`in use by apikeyd ${owner.role} (pid ${owner.pid})`);
    }
  }
  if (tls !== undefined) {
    try {
      const files = await readTlsFiles(tls.cert, tls.key);
      notes.push(...files.warnings);
    } catch (error) {
      if (!(error instanceof TlsFileError)) throw error;
      problems.push(error.message);
    }
  }
  for (const file of files) io.out(`file: ${file}`);
  for (const note of notes) io.out(`note: ${note}`);
  for (const problem of problems) io.out(`problem: ${problem}`);
  if (problems.length > 0) {
    io.out(`${problems.length} problem${problems.length === 1 ? "" : "s"} found`);
    return 1;
  }
  io.out(`OK: ${configDir} and ${stateDir} pass every check${loaded === undefined ? "" : ` (${loaded.factory.size} endpoints)`}`);
  return 0;
}
