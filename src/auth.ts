/** The key pairs (SPEC §3): reading them from `apikeys`, finding them in a request, comparing them in constant time. */

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { isObject, isValidValue } from "./schema.ts";

/** One endpoint's pair, with the digests that the constant-time comparison uses. */
export interface KeyPair {
  readonly rd: string;
  readonly wr: string;
  readonly rdDigest: Buffer;
  readonly wrDigest: Buffer;
}

/** Endpoint name to its pair. */
export type Keyring = ReadonlyMap<string, KeyPair>;

// Digests are keyed with a per-process secret: comparing fixed-size MACs takes the same time
// whatever the lengths of the keys, and the digests held in memory are useless outside this process.
const DIGEST_SECRET = randomBytes(32);
const KEY_RULE = { kind: "key" } as const;

function digest(key: string): Buffer {
  return createHmac("sha256", DIGEST_SECRET).update(key).digest();
}

/** Whether a presented key equals the stored one, in time independent of both. */
export function keyMatches(stored: Buffer, presented: string): boolean {
  return timingSafeEqual(stored, digest(presented));
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
  });
  return problems;
}

/** Builds the keyring from an `apikeys` document already checked by keyringProblems. */
export function buildKeyring(doc: unknown): Keyring {
  const ring = new Map<string, KeyPair>();
  if (!isObject(doc) || !Array.isArray(doc["keys"])) return ring;
  for (const pair of doc["keys"] as unknown[]) {
    if (!isObject(pair)) continue;
    const rd = String(pair["rd"]);
    const wr = String(pair["wr"]);
    ring.set(String(pair["name"]), Object.freeze({ rd, wr, rdDigest: digest(rd), wrDigest: digest(wr) }));
  }
  return ring;
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
 * digits of the key's SHA-256 (`printf %s KEY | sha256sum | cut -c1-8` gives the same).
 */
export function fingerprint(key: string): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}
