/**
 * node:crypto, loaded on first use. Loading it took about 3 ms of every start (its ciphers and
 * streams), a tenth of bare node's start to listening, and a restart needs none of it: the first
 * keyed request (timingSafeEqual), a key change (fingerprints) or a first start (new secrets) load it.
 */

import { createRequire } from "node:module";
import type * as crypto from "node:crypto";

const loadBuiltin = createRequire("/"); // any absolute path: built-ins never resolve from disk
let loaded: typeof crypto | undefined;

/** node:crypto, loaded on first use. */
export function nodeCrypto(): typeof crypto {
  return (loaded ??= loadBuiltin("node:crypto") as typeof crypto);
}
