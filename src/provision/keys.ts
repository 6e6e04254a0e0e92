/** Key pairs as the provisioning tool sees them: fresh random keys, the device's key rule, fingerprints. */

import { createHash, randomBytes } from "node:crypto";

/** One endpoint's pair of keys. */
export interface Pair {
  readonly rd: string;
  readonly wr: string;
}

/** The `apikeys` pair that devices leave the factory with (SPEC §1, index 1). */
export const FACTORY_APIKEYS: Pair = Object.freeze({ rd: "rdKey2", wr: "wrKey2" });

/** The pair that guards the key pairs themselves; it is changed last. */
export const APIKEYS = "apikeys";

// 24 random bytes = 192 bits, 32 characters of base64url: letters, digits, '-' and '_', which a
// header carries as they are and a form body needs no escaping for (no '+', '/', '=' or '%').
const KEY_BYTES = 24;
const KEY_RULE = /^[\x21-\x7e]{0,128}$/;

/** A fresh key: 192 bits from the system's CSPRNG, base64url without padding. */
export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString("base64url");
}

/** Whether a key is one the device accepts (SPEC §4): 0 to 128 printable ASCII characters, no space. */
export function isDeviceKey(key: unknown): key is string {
  return typeof key === "string" && KEY_RULE.test(key);
}

/** Whether a value is a pair of device keys. */
export function isPair(value: unknown): value is Pair {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  return isDeviceKey(v["rd"]) && isDeviceKey(v["wr"]);
}

/** Whether two pairs hold the same keys. */
export function samePair(a: Pair | undefined, b: Pair | undefined): boolean {
  return a !== undefined && b !== undefined && a.rd === b.rd && a.wr === b.wr;
}

/**
 * The first 8 hex digits of the key's SHA-256, as the server logs them: enough to tell keys apart
 * in a log, useless to an attacker. `printf %s KEY | sha256sum | cut -c1-8` gives the same.
 */
export function fingerprint(key: string): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}
