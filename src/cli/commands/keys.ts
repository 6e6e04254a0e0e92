/**
 * `keys show`, `keys set`, `keys generate`, `keys fingerprint`: the recovery tools for someone with shell access to the
 * state folder. `show` prints the keys themselves: that is its purpose (whoever can read the folder
 * can read apikeys.json anyway).
 */

import { auditKeySet } from "../../access/audit.ts";
import { FingerprintSecretError, loadFingerprintSecret } from "../../access/fingerprint-secret.ts";
import {
  fingerprint,
  GENERATE,
  generateKey,
  isSealedDoc,
  keyringProblems,
  MIN_SEALED_KEY_LENGTH,
  SEALED_PREFIX,
  SEALED_STORED_PREFIX,
  sealKey,
  servedKey,
} from "../../access/keys.ts";
import { factoryKeysOf } from "../../access/weak-keys.ts";
import { loadFactory } from "../../state/config-folder.ts";
import { APIKEYS_ENDPOINT } from "../../state/device.ts";
import { fileText, readStateFile } from "../../state/state-file.ts";
import { cloneJson, shapeProblems, TYPE_NAME, type Json } from "../../state/documents.ts";
import { convertText, INVALID, isObject, isValidKey } from "../../state/schema.ts";
import { NODE_FS, writeFileDurably } from "../../state/store.ts";
import { readPreviousKeysFile, writePreviousKeys } from "../../access/key-deadlines.ts";
import { printable } from "../../common/printable.ts";
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
  const doc = file.status === "ok" ? file.doc : factoryDoc;
  const pairs = pairsOf(doc);
  // A sealed device (docs/api.md §9) has no key to show: each is `sealed:<fingerprint>`.
  const shown = (key: string): string => (key === "" ? EMPTY_KEY : servedKey(key));
  const keys = [["pair", "rd", "wr"], ...pairs.map((p) => [p.name, shown(p.rd), shown(p.wr)])];
  // Then the life of each pair (docs/api.md §8); times in UTC, as `expires` is written.
  const life = [
    ["pair", "enabled", "expires", "origins", "last used", "from", "grace until", "confirm until", "keys changed", "label"],
    ...pairs.map((p) => [
      p.name,
      p.enabled ? "yes" : "NO",
      p.expires === "" ? "never" : p.expires,
      p.origins === "" ? "any" : p.origins.replace(/ /g, ""),
      utc(p.lastUsed),
      p.lastUsedFrom === "" ? "-" : p.lastUsedFrom,
      utc(p.graceUntil),
      utc(p.confirmUntil),
      utc(p.changed),
      printable(p.label),
    ]),
  ];
  printTable(keys, io);
  if (isSealedDoc(doc)) io.out("sealed: the device keeps digests only and cannot show a key (a lost key: apikeyd reset --keys-only)");
  io.out("");
  printTable(life, io);
  return 0;
}

/** Columns padded to their widest cell, two spaces apart; the last one as it is. */
function printTable(rows: string[][], io: CommandIo): void {
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  for (const r of rows) io.out(r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c] as number))).join("  "));
}

/** Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC); "-" for 0. */
function utc(seconds: number): string {
  return seconds > 0 ? new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ") : "-";
}

/** The members of a pair's life that `keys set` takes, as typed on the command line. */
export type LifeChanges = Partial<Record<"label" | "enabled" | "expires" | "origins", string>>;

/**
 * `keys set <pair> [--rd=KEY] [--wr=KEY] [--label=T] [--enabled=B] [--expires=D] [--origins=L]`:
 * changes one pair on disk, with the API's rules for each member. Offline, every member may be set,
 * the `apikeys` pair's `enabled` and `expires` too (docs/api.md §8). A change of a key ends the
 * pair's grace or pending confirmation.
 */
export async function keysSet(configDir: string, stateDir: string, name: string, keys: { rd?: string | undefined; wr?: string | undefined } & LifeChanges, io: CommandIo): Promise<number> {
  const named = (["rd", "wr", "label", "enabled", "expires", "origins"] as const).filter((m) => keys[m] !== undefined);
  if (named.length === 0) throw new CommandError("keys set <pair> [--rd=KEY] [--wr=KEY]: needs --rd=KEY, --wr=KEY or both, or --label, --enabled, --expires, --origins", 2);
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
    const sealed = isSealedDoc(doc);
    // --rd=generate / --wr=generate: a fresh key, printed once below (docs/api.md §9).
    const generated = new Set<string>();
    const given = { ...keys };
    for (const side of ["rd", "wr"] as const) {
      if (given[side] === GENERATE) {
        given[side] = generateKey();
        generated.add(side);
      }
    }
    const changes: Array<["rd" | "wr", string]> = [];
    if (given.rd !== undefined) changes.push(["rd", given.rd]);
    if (given.wr !== undefined) changes.push(["wr", given.wr]);
    const before = { ...pair };
    for (const member of named) {
      const rule = rules?.get(member);
      if (rule === undefined) throw new CommandError(`${member} of ${String(pair[TYPE_NAME])} is not writable`);
      const value = convertText(rule, given[member] as string);
      // The message never repeats the key: it may be a near miss of a real one.
      if (value === INVALID) throw new CommandError(`--${member}: ${LIFE_RULES[member]}`);
      pair[member] = value as Json;
    }
    for (const [side, key] of changes) {
      if (generated.has(side)) continue;
      if (key.startsWith(SEALED_PREFIX) || key.startsWith(SEALED_STORED_PREFIX)) throw new CommandError(`--${side}: a key cannot start with sealed: or $sha256$ (what a sealed device shows and keeps in place of a key)`);
      if (sealed && key !== "" && key.length < MIN_SEALED_KEY_LENGTH) {
        throw new CommandError(`--${side}: on a sealed device a key is generate, "" or at least ${MIN_SEALED_KEY_LENGTH} characters`);
      }
    }
    if (changes.length > 0 && "changed" in pair) {
      // A change of keys, offline: stamped, and any grace or pending confirmation of the pair ends.
      pair["changed"] = Math.floor(Date.now() / 1000);
      pair["graceUntil"] = 0;
      pair["confirmUntil"] = 0;
    }
    // Before the change: a key changed without its audit line would be worse than no change.
    const secret = await orRefuseSecret(loadFingerprintSecret(stateDir, { create: true, warn: (m) => io.log.log("warn", m) }));
    // A sealed device keeps the digest only.
    if (sealed) for (const [side] of changes) pair[side] = sealKey(String(pair[side]), secret);
    const problems = [...shapeProblems(doc, schema), ...keyringProblems(doc)];
    if (problems.length > 0) throw new CommandError(`the changed ${APIKEYS_ENDPOINT}.json would be invalid: ${problems.join("; ")}`);
    await writeFileDurably(NODE_FS, stateDir, `${APIKEYS_ENDPOINT}.json`, fileText(doc));
    if (changes.length > 0) await forgetPreviousKeys(stateDir, name, io);
    for (const [side, key] of changes) {
      const warnings = auditKeySet({ log: io.log, secret }, factoryKeysOf(factoryDoc), name, side, key, { source: "keys-set" });
      for (const w of warnings) io.err(`warning: ${w.message}`);
    }
    if (before["enabled"] !== pair["enabled"]) {
      io.log.log("info", pair["enabled"] === true ? "pair enabled" : "pair disabled", { event: pair["enabled"] === true ? "pair-enabled" : "pair-disabled", source: "keys-set", pair: name });
    }
    for (const member of ["expires", "origins", "label"] as const) {
      if (before[member] !== pair[member]) io.log.log("info", `pair ${member} changed`, { event: "pair-changed", source: "keys-set", pair: name, member });
    }
    if (name === APIKEYS_ENDPOINT && (pair["enabled"] === false || (pair["expires"] ?? "") !== "")) {
      io.err("warning: the apikeys pair is switched off or expires: key management over HTTP stops then (keys set can undo it)");
    }
    io.out(`${name}: ${named.length === 1 ? named[0] : `${named.slice(0, -1).join(", ")} and ${named.at(-1)}`} changed in ${stateDir}/${APIKEYS_ENDPOINT}.json`);
    // The one place a generated key is shown: copy it now.
    for (const [side, key] of changes) if (generated.has(side)) io.out(`${name} ${side} (generated, shown once): ${key}`);
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

/** What each flag of `keys set` takes, for its refusal (never the value typed). */
const LIFE_RULES = {
  rd: "a key is 0 to 128 printable ASCII characters without spaces (0x21 to 0x7E)",
  wr: "a key is 0 to 128 printable ASCII characters without spaces (0x21 to 0x7E)",
  label: "0 to 64 characters, no control characters",
  enabled: "true, false, 1 or 0",
  expires: 'a real date and time in UTC, "YYYY-MM-DD HH:MM:SS", or "" for never',
  origins: 'a comma-separated list of IPv4/IPv6 addresses and CIDR ranges, or "" for any',
} as const;

/** Drops a pair's previous keys (its grace or pending confirmation ended with an offline change). */
async function forgetPreviousKeys(stateDir: string, name: string, io: CommandIo): Promise<void> {
  const { entries, sealed } = await readPreviousKeysFile(stateDir, (m) => io.log.log("warn", m));
  if (!entries.delete(name)) return;
  await writePreviousKeys(NODE_FS, stateDir, entries, sealed);
}

interface PairRow {
  name: string;
  rd: string;
  wr: string;
  label: string;
  enabled: boolean;
  expires: string;
  origins: string;
  changed: number;
  lastUsed: number;
  lastUsedFrom: string;
  graceUntil: number;
  confirmUntil: number;
}

function pairsOf(doc: unknown): PairRow[] {
  const keys = isObject(doc) && Array.isArray(doc["keys"]) ? (doc["keys"] as unknown[]) : [];
  const text = (v: unknown): string => (typeof v === "string" ? v : "");
  const seconds = (v: unknown): number => (typeof v === "number" ? v : 0);
  return keys.filter(isObject).map((p) => ({
    name: String(p["name"]),
    rd: String(p["rd"]),
    wr: String(p["wr"]),
    label: text(p["label"]),
    enabled: p["enabled"] !== false,
    expires: text(p["expires"]),
    origins: text(p["origins"]),
    changed: seconds(p["changed"]),
    lastUsed: seconds(p["lastUsed"]),
    lastUsedFrom: text(p["lastUsedFrom"]),
    graceUntil: seconds(p["graceUntil"]),
    confirmUntil: seconds(p["confirmUntil"]),
  }));
}
