/** Key pairs as the provisioning tool sees them (fresh keys and fingerprints are src/access/keys.ts's, the key rule src/state/schema.ts's). */

import { isValidKey } from "../state/schema.ts";

/** One endpoint's pair of keys. */
export interface Pair {
  readonly rd: string;
  readonly wr: string;
}

/** The `apikeys` pair that devices leave the factory with (docs/api.md §1, index 1). */
export const FACTORY_APIKEYS: Pair = Object.freeze({ rd: "rdKey2", wr: "wrKey2" });

/** The pair that guards the key pairs themselves; it is changed last. */
export const APIKEYS = "apikeys";

/** Whether a value is a pair of device keys. */
export function isPair(value: unknown): value is Pair {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  return isValidKey(v["rd"]) && isValidKey(v["wr"]);
}

/** Whether two pairs hold the same keys. */
export function samePair(a: Pair | undefined, b: Pair | undefined): boolean {
  return a !== undefined && b !== undefined && a.rd === b.rd && a.wr === b.wr;
}
