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
  /** The device's sealing salt (sealSalt): a sealed key's slot needs it to hash what a request presents. */
  salt?(): string;
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

/**
 * The slot of a stored key; one that breaks the key rule (never stored: checked at load and by PUT)
 * matches nothing. A sealed key (docs/api.md §9) gets a digest slot: its 32 bytes, tied to the
 * device's salt; without the salt (a keyring built for a report) it matches nothing.
 */
function slotOf(key: string, saltOf: (() => string) | undefined): Buffer {
  const sealed = SEALED_FORM.exec(key);
  if (sealed !== null) {
    // The salt is derived only when a sealed key needs it: an unsealed start loads no node:crypto.
    const salt = saltOf?.();
    if (salt === undefined) return Buffer.alloc(SLOT_BYTES, 0xff);
    const slot = Buffer.from(sealed[2] as string, "base64url");
    SLOT_SALTS.set(slot, salt);
    return slot;
  }
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
  // A sealed key's slot is its digest (32 bytes; a plain slot is 129): one hash, then a fixed-size compare.
  if (stored.length === DIGEST_BYTES) return nodeCrypto().timingSafeEqual(stored, keyDigest(SLOT_SALTS.get(stored) as string, presented));
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
  const sealed = doc["sealed"];
  if (sealed !== undefined && typeof sealed !== "boolean") problems.push("/sealed: must be true or false");
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
      } else if (sealed === true && pair[side] !== "" && !isSealedKey(pair[side])) {
        problems.push(`/keys/${i}/${side}: a sealed device keeps digests only, and this is a key in clear (to start over: apikeyd reset --keys-only)`);
      } else if (sealed !== true && isSealedKey(pair[side])) {
        problems.push(`/keys/${i}/${side}: a sealed key on a device that is not sealed (was "sealed" set to false by hand? to start over: apikeyd reset --keys-only)`);
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

/** The keys of two strings (stored forms: a sealed key is its digest), with their slots. */
export function keysOf(rd: string, wr: string, salt?: string | (() => string)): Keys {
  const saltOf = typeof salt === "string" ? () => salt : salt;
  return Object.freeze({ rd, wr, rdSlot: slotOf(rd, saltOf), wrSlot: slotOf(wr, saltOf) });
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

/** `fn` called at most once, on first use. */
function once<T>(fn: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: fn() }).v;
}

function buildPair(name: string, pair: Record<string, unknown>, context: KeyringContext | undefined): KeyPair {
  const salt = context?.salt === undefined ? undefined : once(context.salt.bind(context));
  const keys = keysOf(String(pair["rd"]), String(pair["wr"]), salt);
  // Members of revision 0 pairs (a factory config not yet updated) take the values that change nothing.
  const enabled = pair["enabled"] !== false;
  const expires = (typeof pair["expires"] === "string" ? expiresMs(pair["expires"]) : undefined) ?? Infinity;
  const origins = typeof pair["origins"] === "string" ? originsOf(pair["origins"]) : undefined;
  const stored = context?.previousOf(name, pair);
  const graceUntilMs = secondsMs(pair["graceUntil"]);
  const confirmUntilMs = secondsMs(pair["confirmUntil"]) || Infinity;
  const previous = stored !== undefined && graceUntilMs > 0 ? keysOf(stored.rd, stored.wr, salt) : undefined;
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

// Sealed keys (docs/api.md §9). A sealed device keeps, in place of each non-empty key, the record
// `$sha256$<fingerprint>$<digest>`: the key's fingerprint (the 8 hex digits of the logs, which reads
// show as `sealed:<fingerprint>`) and SHA-256(salt || key) in base64url (43 characters), where salt
// is 64 hex digits derived from the device's fingerprint secret. The record passes the key rule (60
// printable characters), so the loader's shape checks take it as they are; nothing accepts it as a
// key (a key given over HTTP may not start with `$sha256$`), and the loader refuses one on a device
// that is not sealed. Keys are long and random here (192-bit generated, or at least 24 characters),
// so one fast hash is the right cost: a slow KDF would buy nothing and hand out a CPU lever.

/** The stored form of a sealed key; group 1 its fingerprint, group 2 its digest. */
export const SEALED_FORM = /^\$sha256\$([0-9a-f]{8})\$([A-Za-z0-9_-]{43})$/;
/** What reads show for a sealed key: `sealed:<fingerprint>`. */
export const SEALED_PREFIX = "sealed:";
/** The stored form's prefix; a key given over HTTP may not start with it, nor with SEALED_PREFIX. */
export const SEALED_STORED_PREFIX = "$sha256$";
/** The shortest key a client may choose on a sealed device: a digest at rest must not be a cracking target. */
export const MIN_SEALED_KEY_LENGTH = 24;
/** The value of `rd` or `wr` in a PUT that asks the device to make the key (docs/api.md §9). */
export const GENERATE = "generate";

const DIGEST_BYTES = 32;
/** Each digest slot's salt: the slot is a plain Buffer, so the pipeline's key check keeps its signature. */
const SLOT_SALTS = new WeakMap<Buffer, string>();
const SALTS = new WeakMap<Buffer, string>();

// One-shot crypto.hash (Node 20.12+, 21.7+) where there is one: about half the cost of createHash.
// Looked up on first use, with node:crypto (common/lazy-crypto.ts); null: there is none.
type OneShot = (algorithm: string, data: string, encoding: "buffer") => Buffer;
let oneShot: OneShot | null | undefined;

/** SHA-256(salt || key): the digest of a sealed key. */
function keyDigest(salt: string, key: string): Buffer {
  const text = salt + key;
  if (oneShot === undefined) oneShot = (nodeCrypto() as { hash?: OneShot }).hash ?? null;
  return oneShot !== null ? oneShot("sha256", text, "buffer") : nodeCrypto().createHash("sha256").update(text).digest();
}

/** The device's sealing salt: 64 hex digits, HMAC-SHA-256(fingerprint secret, a fixed label). */
export function sealSalt(secret: Buffer): string {
  let salt = SALTS.get(secret);
  if (salt === undefined) {
    salt = nodeCrypto().createHmac("sha256", secret).update("apikeyd sealed key digest v1").digest("hex");
    SALTS.set(secret, salt);
  }
  return salt;
}

/** Whether a stored key is a sealed record. */
export function isSealedKey(stored: unknown): boolean {
  return typeof stored === "string" && SEALED_FORM.test(stored);
}

/** The stored form of `key` on a sealed device: "" stays "", a sealed record stays as it is. */
export function sealKey(key: string, secret: Buffer): string {
  if (key === "" || SEALED_FORM.test(key)) return key;
  return `${SEALED_STORED_PREFIX}${fingerprint(key, secret)}$${keyDigest(sealSalt(secret), key).toString("base64url")}`;
}

/** A stored key as answers, pages and `keys show` give it: a sealed record as `sealed:<fingerprint>`. */
export function servedKey(stored: string): string {
  const sealed = SEALED_FORM.exec(stored);
  return sealed === null ? stored : SEALED_PREFIX + (sealed[1] as string);
}

/** The fingerprint of a stored key (a sealed record carries its own). */
export function storedFingerprint(stored: string, secret: Buffer): string {
  const sealed = SEALED_FORM.exec(stored);
  return sealed === null ? fingerprint(stored, secret) : (sealed[1] as string);
}

/** Whether an `apikeys` document is sealed. */
export function isSealedDoc(doc: unknown): boolean {
  return isObject(doc) && doc["sealed"] === true;
}

/** A copy of an `apikeys` document with every key sealed and `sealed` true. */
export function sealDocument<T>(doc: T, secret: Buffer): T {
  if (!isObject(doc) || !Array.isArray(doc["keys"])) return doc;
  const keys = (doc["keys"] as unknown[]).map((p) => (isObject(p) ? { ...p, rd: sealKey(String(p["rd"]), secret), wr: sealKey(String(p["wr"]), secret) } : p));
  return { ...doc, keys, sealed: true } as T;
}

/** The document as it is shown (reads, pages, `keys show`): a sealed device's records as `sealed:<fingerprint>`. */
export function servedDocument<T>(doc: T): T {
  if (!isSealedDoc(doc) || !Array.isArray((doc as Record<string, unknown>)["keys"])) return doc;
  const d = doc as Record<string, unknown>;
  const keys = (d["keys"] as unknown[]).map((p) => (isObject(p) ? { ...p, rd: servedKey(String(p["rd"])), wr: servedKey(String(p["wr"])) } : p));
  return { ...d, keys } as T;
}
