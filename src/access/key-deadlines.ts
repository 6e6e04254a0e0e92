/**
 * The keys a change replaced, while a grace or a pending confirmation still needs them (docs/api.md
 * §8): kept apart from the served `apikeys` document, in `<state>/previous.keys` (mode 600, no
 * endpoint maps to it), so that no answer can ever show them.
 *
 * Each entry is tied to the pair as the document holds it: the HMAC of the pair's current keys
 * (keyed by the device's fingerprint secret) and the pair's `graceUntil` and `confirmUntil`. An
 * entry that does not match is not used, and dropped at the next write. This is what makes the two
 * files safe to write one after the other: an entry is written before the document that refers to
 * it, and removed after it, so a crash between the two leaves an entry nothing refers to.
 */

import { closeSync, constants, openSync, promises as fsp, readFileSync } from "node:fs";
import { nodeCrypto } from "../common/lazy-crypto.ts";
import { join } from "node:path";
import { isObject, isValidKey } from "../state/schema.ts";
import { syncFolder, writeFileDurably, type StoreFs } from "../state/store.ts";

export const PREVIOUS_KEYS_FILE = "previous.keys";

/** One pair's previous keys and the deadlines they serve. */
export interface PreviousEntry {
  readonly rd: string;
  readonly wr: string;
  /** HMAC of the keys that replaced them (the pair's current keys), hex. */
  readonly for: string;
  /** Unix seconds, as in the pair's members; 0 none. */
  readonly graceUntil: number;
  readonly confirmUntil: number;
}

/** Pair name to entry (a Map: pair names come from files, and "__proto__" is one like any other). */
export type PreviousKeys = ReadonlyMap<string, PreviousEntry>;

/** The HMAC that ties an entry to a pair's current keys. */
export function keysDigest(secret: Buffer, rd: string, wr: string): string {
  return nodeCrypto().createHmac("sha256", secret).update(`${rd}\n${wr}`).digest("hex");
}

/** Whether an entry belongs to the pair as it stands (its current keys and its deadlines). */
export function entryMatches(secret: Buffer, entry: PreviousEntry | undefined, pair: Record<string, unknown>): entry is PreviousEntry {
  if (entry === undefined) return false;
  if (entry.graceUntil !== (pair["graceUntil"] ?? 0) || entry.confirmUntil !== (pair["confirmUntil"] ?? 0)) return false;
  if (entry.graceUntil === 0 && entry.confirmUntil === 0) return false;
  const digest = Buffer.from(keysDigest(secret, String(pair["rd"]), String(pair["wr"])), "hex");
  const stored = Buffer.from(entry.for, "hex");
  return stored.length === digest.length && nodeCrypto().timingSafeEqual(stored, digest);
}

/**
 * The file's text: indented, newline-terminated, like the state files. On a sealed device
 * (docs/api.md §9) the entries hold sealed records, and the file says `"sealed": true`: sealing
 * writes this file before apikeys.json, so a start that finds it beside an `apikeys.json` not yet
 * sealed finishes the sealing that a crash interrupted (load-device.ts).
 */
export function previousKeysText(entries: PreviousKeys, sealed = false): string {
  const pairs = [...entries].map(([name, e]) => ({ name, rd: e.rd, wr: e.wr, for: e.for, graceUntil: e.graceUntil, confirmUntil: e.confirmUntil }));
  return JSON.stringify(sealed ? { sealed: true, pairs } : { pairs }, null, 2) + "\n";
}

/**
 * Reads `<state>/previous.keys`; empty when missing. A file that is not ours (damaged, a link) is
 * reported through `warn` and read as empty: the pairs it served then keep their current keys (a
 * grace ends, a pending change counts as confirmed), which locks no one out.
 */
export async function readPreviousKeys(stateDir: string, warn: (message: string) => void): Promise<Map<string, PreviousEntry>> {
  return (await readPreviousKeysFile(stateDir, warn)).entries;
}

/** The file: its entries, and whether a sealed device wrote it. */
export async function readPreviousKeysFile(stateDir: string, warn: (message: string) => void): Promise<{ entries: Map<string, PreviousEntry>; sealed: boolean }> {
  const path = join(stateDir, PREVIOUS_KEYS_FILE);
  const entries = new Map<string, PreviousEntry>();
  const none = { entries, sealed: false };
  let text: string;
  try {
    // Synchronous, as the start's other reads (config-folder.ts says why).
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      text = readFileSync(fd, "utf8");
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") warn(`${path}: cannot be read (${code}); grace keys and pending confirmations in it are dropped`);
    return none;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const pairs = isObject(parsed) && Array.isArray(parsed["pairs"]) ? (parsed["pairs"] as unknown[]) : undefined;
  if (pairs === undefined) {
    // Never the content: it holds keys.
    warn(`${path}: not a previous-keys file; grace keys and pending confirmations in it are dropped`);
    return none;
  }
  for (const p of pairs) {
    if (!isObject(p) || typeof p["name"] !== "string" || !isValidKey(p["rd"]) || !isValidKey(p["wr"]) || typeof p["for"] !== "string") continue;
    const graceUntil = p["graceUntil"];
    const confirmUntil = p["confirmUntil"];
    if (!Number.isSafeInteger(graceUntil) || !Number.isSafeInteger(confirmUntil)) continue;
    entries.set(p["name"], { rd: p["rd"], wr: p["wr"], for: p["for"], graceUntil: graceUntil as number, confirmUntil: confirmUntil as number });
  }
  return { entries, sealed: isObject(parsed) && parsed["sealed"] === true };
}

/** Writes the file durably (mode 600); with no entry left, removes it. */
export async function writePreviousKeys(fs: StoreFs, stateDir: string, entries: PreviousKeys, sealed = false): Promise<void> {
  if (entries.size > 0) {
    await writeFileDurably(fs, stateDir, PREVIOUS_KEYS_FILE, previousKeysText(entries, sealed));
    return;
  }
  try {
    await fs.unlink(join(stateDir, PREVIOUS_KEYS_FILE));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  await syncFolder(fs, stateDir);
}

/** Removes the file (`reset`), if there. */
export async function removePreviousKeys(stateDir: string): Promise<void> {
  await fsp.unlink(join(stateDir, PREVIOUS_KEYS_FILE)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
}
