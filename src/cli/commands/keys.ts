/**
 * `keys show`, `keys set`, `keys generate`, `keys fingerprint`: the recovery tools for someone with shell access to the
 * state folder. `show` prints the keys themselves: that is its purpose (whoever can read the folder
 * can read apikeys.json anyway).
 */

import { auditKeySet } from "../../access/audit.ts";
import { FingerprintSecretError, loadFingerprintSecret } from "../../access/fingerprint-secret.ts";
import { fingerprint, generateKey, keyringProblems } from "../../access/keys.ts";
import { factoryKeysOf } from "../../access/weak-keys.ts";
import { loadFactory } from "../../state/config-folder.ts";
import { APIKEYS_ENDPOINT } from "../../state/device.ts";
import { fileText, readStateFile } from "../../state/state-file.ts";
import { cloneJson, shapeProblems, TYPE_NAME, type Json } from "../../state/documents.ts";
import { convertText, INVALID, isObject, isValidKey } from "../../state/schema.ts";
import { NODE_FS, writeFileDurably } from "../../state/store.ts";
import { CommandError, orRefuse, takeStateFolder, type CommandIo } from "./shared.ts";

// Keys never hold a space, so this marker cannot be mistaken for one.
const EMPTY_KEY = "(empty: open)";

/** `keys show`: every pair of the state's apikeys.json (the factory's when there is no state yet). */
export async function keysShow(configDir: string, stateDir: string, io: CommandIo): Promise<number> {
  const { schema, factory } = await orRefuse(loadFactory(configDir));
  const factoryDoc = factory.get(APIKEYS_ENDPOINT) as Json;
  const file = await readStateFile(stateDir, APIKEYS_ENDPOINT, factoryDoc, schema);
  if (file.status === "invalid") {
    throw new CommandError(`${file.problems.join("\n")}\nTo start over with the factory keys: apikeyd reset --keys-only`);
  }
  if (file.status === "missing") io.err(`no ${APIKEYS_ENDPOINT}.json in ${stateDir} yet: these are the factory pairs, which the first start copies there`);
  const pairs = pairsOf(file.status === "ok" ? file.doc : factoryDoc);
  const rows = [["pair", "rd", "wr"], ...pairs.map((p) => [p.name, p.rd === "" ? EMPTY_KEY : p.rd, p.wr === "" ? EMPTY_KEY : p.wr])];
  const widths = [0, 1].map((c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  for (const r of rows) io.out(`${(r[0] as string).padEnd(widths[0] as number)}  ${(r[1] as string).padEnd(widths[1] as number)}  ${r[2]}`);
  return 0;
}

/** `keys set <pair> [--rd=KEY] [--wr=KEY]`: changes one pair on disk, with the API's key rule. */
export async function keysSet(configDir: string, stateDir: string, name: string, keys: { rd: string | undefined; wr: string | undefined }, io: CommandIo): Promise<number> {
  if (keys.rd === undefined && keys.wr === undefined) throw new CommandError("keys set <pair> [--rd=KEY] [--wr=KEY]: needs --rd=KEY, --wr=KEY or both", 2);
  const { schema, factory } = await orRefuse(loadFactory(configDir));
  const lock = await takeStateFolder(stateDir, "keys set");
  try {
    const factoryDoc = factory.get(APIKEYS_ENDPOINT) as Json;
    const file = await readStateFile(stateDir, APIKEYS_ENDPOINT, factoryDoc, schema);
    if (file.status === "invalid") {
      throw new CommandError(`${file.problems.join("\n")}\nTo start over with the factory keys: apikeyd reset --keys-only`);
    }
    const doc = cloneJson(file.status === "ok" ? file.doc : factoryDoc) as { keys: Json[] };
    const pair = doc.keys.find((p) => isObject(p) && p["name"] === name) as Record<string, Json> | undefined;
    // The name is not repeated: it is an argument, and a key typed in its place would be printed.
    if (pair === undefined) throw new CommandError(`no key pair by that name; the pairs are: ${pairsOf(doc).map((p) => p.name).join(", ")}`);
    const rules = schema.types.get(String(pair[TYPE_NAME]))?.writable;
    const changes: Array<["rd" | "wr", string]> = [];
    if (keys.rd !== undefined) changes.push(["rd", keys.rd]);
    if (keys.wr !== undefined) changes.push(["wr", keys.wr]);
    for (const [side, text] of changes) {
      const rule = rules?.get(side);
      if (rule === undefined) throw new CommandError(`${side} of ${String(pair[TYPE_NAME])} is not writable`);
      const value = convertText(rule, text);
      // The message never repeats the key: it may be a near miss of a real one.
      if (value === INVALID) throw new CommandError(`--${side}: a key is 0 to 128 printable ASCII characters without spaces (0x21 to 0x7E)`);
      pair[side] = value as string;
    }
    const problems = [...shapeProblems(doc, schema), ...keyringProblems(doc)];
    if (problems.length > 0) throw new CommandError(`the changed ${APIKEYS_ENDPOINT}.json would be invalid: ${problems.join("; ")}`);
    // Before the change: a key changed without its audit line would be worse than no change.
    const secret = await orRefuseSecret(loadFingerprintSecret(stateDir, { create: true, warn: (m) => io.log.log("warn", m) }));
    await writeFileDurably(NODE_FS, stateDir, `${APIKEYS_ENDPOINT}.json`, fileText(doc));
    for (const [side, key] of changes) {
      const warnings = auditKeySet({ log: io.log, secret }, factoryKeysOf(factoryDoc), name, side, key, { source: "keys-set" });
      for (const w of warnings) io.err(`warning: ${w.message}`);
    }
    io.out(`${name}: ${changes.map(([side]) => side).join(" and ")} changed in ${stateDir}/${APIKEYS_ENDPOINT}.json`);
    return 0;
  } finally {
    lock.release();
  }
}

/**
 * `keys fingerprint`: the fingerprint this device's log lines give each key read from standard
 * input (one per line), so that a technician can tell which key a `key-changed` line is about.
 * Reads only: a state folder whose server never started has no secret yet, and gets none here.
 */
export async function keysFingerprint(stateDir: string, io: CommandIo): Promise<number> {
  const secret = await orRefuseSecret(loadFingerprintSecret(stateDir));
  if (io.readInput === undefined) throw new CommandError("keys fingerprint reads the keys from standard input");
  const text = await io.readInput();
  if (text === "") throw new CommandError("keys fingerprint: no key on standard input (e.g. printf '%s\\n' \"$KEY\" | apikeyd keys fingerprint)", 2);
  const keys = text.replace(/\r?\n$/, "").split(/\r?\n/);
  // The line number only: a line that is no key may still be a near miss of one.
  keys.forEach((key, i) => {
    if (!isValidKey(key)) throw new CommandError(`keys fingerprint: line ${i + 1} of standard input is not a key (0 to 128 printable ASCII characters without spaces)`);
  });
  for (const key of keys) io.out(fingerprint(key, secret));
  return 0;
}

async function orRefuseSecret(loading: Promise<Buffer>): Promise<Buffer> {
  try {
    return await loading;
  } catch (error) {
    if (error instanceof FingerprintSecretError) throw new CommandError(error.message);
    throw error;
  }
}

/** `keys generate`: one new key on stdout. */
export function keysGenerate(io: CommandIo): number {
  io.out(generateKey());
  return 0;
}

function pairsOf(doc: unknown): Array<{ name: string; rd: string; wr: string }> {
  const keys = isObject(doc) && Array.isArray(doc["keys"]) ? (doc["keys"] as unknown[]) : [];
  return keys.filter(isObject).map((p) => ({ name: String(p["name"]), rd: String(p["rd"]), wr: String(p["wr"]) }));
}
