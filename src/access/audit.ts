/** The audit line of a key change, one shape for every way a key changes (PUT, reload, offline). */

import type { LogFields, Logger } from "../common/log.ts";
import { fingerprint, type Keyring } from "./keys.ts";

/** Logs a `key-changed` event: which pair and side, and the new key's fingerprint, never the key. */
export function auditKeyChange(log: Logger, pair: string, side: "rd" | "wr", key: string, context: LogFields): void {
  log.log("info", "key changed", { event: "key-changed", ...context, pair, side, fingerprint: fingerprint(key) });
}

/** Logs a `key-changed` event for each side whose key differs between two keyrings. */
export function auditKeyringChanges(log: Logger, before: Keyring, after: Keyring, context: LogFields): void {
  for (const [name, pair] of after) {
    for (const side of ["rd", "wr"] as const) {
      if (before.get(name)?.[side] !== pair[side]) auditKeyChange(log, name, side, pair[side], context);
    }
  }
}
