/** The key pairs (docs/api.md §3): reading them from `apikeys`, finding them in a request, comparing them in constant time. */

import { nodeCrypto } from "../common/lazy-crypto.ts";
import { isObject, isValidKey, isValidValue, MAX_KEY_LENGTH } from "../state/schema.ts";
import { expiresMs } from "./expires.ts";
import { originsOf, type Origins } from "./origins.ts";

/** Two keys and their slots. */
export interface Keys {
  readonly rd: string;
  readonly wr: string;
  readonly rdSlot: Buffer;
  readonly wrSlot: Buffer;
}

/** When a pair last let a request in: kept in memory, updated in place (access/last-use.ts). */
export interface UseRecord {
  /** Milliseconds since the epoch; 0 never. */
  ms: number;
  /** The client's socket address, as node gives it. */
  from: string;
}

/**
 * One endpoint's pair, with the fixed-width slots that the constant-time comparison uses, and its
 * life (docs/api.md §8) worked out once when the keyring is built, so that a request costs a few
 * comparisons and no allocation.
 */
export interface KeyPair extends Keys {
  readonly enabled: boolean;
  /** When the pair stops opening (ms); Infinity: never. */
  readonly expiresMs: number;
  /** The addresses a right key may come from; undefined: any. */
  readonly origins: Origins | undefined;
  /** The keys a change replaced, opening until graceUntilMs; undefined: none. */
  readonly previous: Keys | undefined;
  readonly graceUntilMs: number;
  /** A change waiting for confirmation reverts then (ms); Infinity: none pending. */
  readonly confirmUntilMs: number;
  /** Which keys the pending change set: a confirming request presents each (non-empty) one. */
  readonly confirmRd: boolean;
  readonly confirmWr: boolean;
  /** No life rule applies (enabled, no expiry, any origin, no grace, nothing pending): the plain key check. */
  readonly plain: boolean;
  /** The pair's last use, the same object across keyrings. */
  readonly use: UseRecord;
}

/** What the keyring takes from outside the document: the previous keys and the use records (access/key-life.ts). */
export interface KeyringContext {
  /** The previous keys of a pair, if a grace or a confirmation keeps them (checked against the pair's own members). */
  previousOf(name: string, pair: Record<string, unknown>): { rd: string; wr: string } | undefined;
  useOf(name: string, pair: Record<string, unknown>): UseRecord;
}

/** Endpoint name to its pair. */
export type Keyring = ReadonlyMap<string, KeyPair>;

const KEY_RULE = { kind: "key" } as const;

// A key in a fixed-width slot: its length, its bytes, zeros up to the widest key. Comparing two
// slots with timingSafeEqual always touches every byte, so the time says nothing about the stored
// key's length or where a guess first differs. It replaces an HMAC per request (about 2.3 µs, the
// largest item of our own code in the read path's profile) with a copy and a compare (about 0.2 µs).
const SLOT_BYTES = 1 + MAX_KEY_LENGTH;
const scratch = Buffer.alloc(SLOT_BYTES);

function fillSlot(slot: Buffer, key: string): Buffer {
  slot.fill(0);
  slot[0] = key.length;
  slot.write(key, 1, "latin1");
  return slot;
}

/** The slot of a stored key; one that breaks the key rule (never stored: checked at load and by PUT) matches nothing. */
function slotOf(key: string): Buffer {
  return isValidValue(KEY_RULE, key) ? fillSlot(Buffer.alloc(SLOT_BYTES), key) : Buffer.alloc(SLOT_BYTES, 0xff);
}

/**
 * Whether a presented key equals the stored one (a slot from the keyring), in time independent of
 * the stored key. A presented key that no stored key could be (over 128 characters, or outside
 * printable ASCII) is refused before the comparison: that shortcut depends only on what the client
 * sent and on the public key rule, so it tells a guesser nothing it did not know.
 */
export function keyMatches(stored: Buffer, presented: string): boolean {
  if (!isValidKey(presented)) return false;
  // One shared scratch slot, all zeros between calls: the comparison is synchronous, and the key's
  // bytes are wiped after use (only those: the rest of the slot stays zero).
  const length = presented.length;
  scratch[0] = length;
  scratch.write(presented, 1, "latin1");
  const same = nodeCrypto().timingSafeEqual(stored, scratch);
  scratch.fill(0, 0, 1 + length);
  return same;
}

/** The problems of an `apikeys` document: a `keys` array of pairs with unique names and valid keys. */
export function keyringProblems(doc: unknown): string[] {
  if (!isObject(doc) || !Array.isArray(doc["keys"])) return ['must be an object with a "keys" array'];
  const problems: string[] = [];
  const seen = new Set<string>();
  doc["keys"].forEach((pair: unknown, i) => {
    if (!isObject(pair) || typeof pair["name"] !== "string" || pair["name"] === "") {
      problems.push(`/keys/${i}: a pair needs a non-empty "name"`);
      return;
    }
    if (seen.has(pair["name"])) problems.push(`/keys/${i}: a second pair named "${pair["name"]}"`);
    seen.add(pair["name"]);
    for (const side of ["rd", "wr"]) {
      // Never echo the key itself: these messages reach the log.
      if (!isValidValue(KEY_RULE, pair[side])) {
        problems.push(`/keys/${i}/${side}: a key is 0 to 128 printable ASCII characters without spaces`);
      }
    }
    // The read-only members of revision 1 (docs/api.md §8), where present.
    for (const member of ["changed", "lastUsed", "graceUntil", "confirmUntil"]) {
      const v = pair[member];
      if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 0)) problems.push(`/keys/${i}/${member}: must be a whole number of Unix seconds`);
    }
    const from = pair["lastUsedFrom"];
    if (from !== undefined && (typeof from !== "string" || from.length > 64)) problems.push(`/keys/${i}/lastUsedFrom: must be an address`);
  });
  return problems;
}

/** The keys of two strings, with their slots. */
export function keysOf(rd: string, wr: string): Keys {
  return Object.freeze({ rd, wr, rdSlot: slotOf(rd), wrSlot: slotOf(wr) });
}

/** Builds the keyring from an `apikeys` document already checked by keyringProblems. */
export function buildKeyring(doc: unknown, context?: KeyringContext): Keyring {
  const ring = new Map<string, KeyPair>();
  if (!isObject(doc) || !Array.isArray(doc["keys"])) return ring;
  for (const pair of doc["keys"] as unknown[]) {
    if (!isObject(pair)) continue;
    const name = String(pair["name"]);
    ring.set(name, buildPair(name, pair, context));
  }
  return ring;
}

function buildPair(name: string, pair: Record<string, unknown>, context: KeyringContext | undefined): KeyPair {
  const keys = keysOf(String(pair["rd"]), String(pair["wr"]));
  // Members of revision 0 pairs (a factory config not yet updated) take the values that change nothing.
  const enabled = pair["enabled"] !== false;
  const expires = (typeof pair["expires"] === "string" ? expiresMs(pair["expires"]) : undefined) ?? Infinity;
  const origins = typeof pair["origins"] === "string" ? originsOf(pair["origins"]) : undefined;
  const stored = context?.previousOf(name, pair);
  const graceUntilMs = secondsMs(pair["graceUntil"]);
  const confirmUntilMs = secondsMs(pair["confirmUntil"]) || Infinity;
  const previous = stored !== undefined && graceUntilMs > 0 ? keysOf(stored.rd, stored.wr) : undefined;
  const pending = stored !== undefined && confirmUntilMs !== Infinity;
  return Object.freeze({
    ...keys,
    enabled,
    expiresMs: expires,
    origins,
    previous,
    graceUntilMs: previous === undefined ? 0 : graceUntilMs,
    confirmUntilMs: pending ? confirmUntilMs : Infinity,
    confirmRd: pending && stored.rd !== keys.rd,
    confirmWr: pending && stored.wr !== keys.wr,
    plain: enabled && expires === Infinity && origins === undefined && previous === undefined && !pending,
    use: context?.useOf(name, pair) ?? { ms: 0, from: "" },
  });
}

function secondsMs(value: unknown): number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value * 1000 : 0;
}

/** A key header sent more than once: refused as a bad request rather than guessed at. */
export const DUPLICATED: unique symbol = Symbol("duplicated");

/** The key headers of a request; undefined when absent. */
export interface PresentedKeys {
  readonly rd: string | undefined | typeof DUPLICATED;
  readonly wr: string | undefined | typeof DUPLICATED;
}

/**
 * Reads ApiRdKey and ApiWrKey from the raw header list, so that a header sent twice is seen as
 * such (node joins repeated unknown headers with ", ").
 */
export function presentedKeys(rawHeaders: readonly string[]): PresentedKeys {
  let rd: string | undefined | typeof DUPLICATED;
  let wr: string | undefined | typeof DUPLICATED;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length !== 8) continue;
    const lower = name.toLowerCase();
    if (lower === "apirdkey") rd = rd === undefined ? (rawHeaders[i + 1] as string) : DUPLICATED;
    else if (lower === "apiwrkey") wr = wr === undefined ? (rawHeaders[i + 1] as string) : DUPLICATED;
  }
  return { rd, wr };
}

/**
 * A short fingerprint that tells keys apart in a log without revealing them: the first 8 hex
 * digits of HMAC-SHA-256(secret, key), with the device's own secret (access/fingerprint-secret.ts).
 * Without the secret, a log line gives no way to test candidate keys, however short the key;
 * `apikeyd keys fingerprint` computes it for a key read from standard input.
 */
export function fingerprint(key: string, secret: Buffer): string {
  return nodeCrypto().createHmac("sha256", secret).update(key).digest("hex").slice(0, 8);
}

/** Bytes of a fingerprint secret: as many as the HMAC's hash gives. */
export const FINGERPRINT_SECRET_BYTES = 32;

/** A fresh fingerprint secret (the device's, made once; or one for a single process). */
export function newFingerprintSecret(): Buffer {
  return nodeCrypto().randomBytes(FINGERPRINT_SECRET_BYTES);
}

// 24 random bytes = 192 bits, 32 characters of base64url: letters, digits, '-' and '_', which a
// header carries as they are and a form body needs no escaping for (no '+', '/', '=' or '%').
const GENERATED_KEY_BYTES = 24;

/** A fresh key (`keys generate`, the provisioning tool): 192 bits from the system's CSPRNG, base64url without padding. */
export function generateKey(): string {
  return nodeCrypto().randomBytes(GENERATED_KEY_BYTES).toString("base64url");
}
