/**
 * node:crypto, loaded on first use. Loading it took about 3 ms of every start (its ciphers and
 * streams), a tenth of bare node's start to listening, and a restart needs none of it: the first
 * keyed request (timingSafeEqual), a key change (fingerprints) or a first start (new secrets) load it.
 */

import { loadBuiltin } from "./builtins.ts";
import type * as crypto from "node:crypto";

let loaded: typeof crypto | undefined;

/** node:crypto, loaded on first use. */
export function nodeCrypto(): typeof crypto {
  return (loaded ??= loadBuiltin<typeof crypto>("node:crypto"));
}
