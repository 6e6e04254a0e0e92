/** The audit lines of key changes, one shape for every way a key changes (PUT, reload, offline). */

import type { LogFields, Logger } from "../common/log.ts";
import { storedFingerprint, type Keyring } from "./keys.ts";
import { weakKeyWarnings, type WeakKeyWarning } from "./weak-keys.ts";

/** What an audit line needs besides the change: where to log, and the device's fingerprint secret. */
export interface AuditTrail {
  readonly log: Logger;
  readonly secret: Buffer;
}

/** Logs a `key-changed` event: which pair and side, and the new key's fingerprint (a sealed key's own), never the key. */
export function auditKeyChange(trail: AuditTrail, pair: string, side: "rd" | "wr", key: string, context: LogFields): void {
  trail.log.log("info", "key changed", { event: "key-changed", ...context, pair, side, fingerprint: storedFingerprint(key, trail.secret) });
}

/**
 * A key set on purpose (a PUT, `keys set`): its `key-changed` line, then a `weak-key` warning for a
 * key that is empty, a factory key or short. Returns the warnings (a PUT also answers them).
 */
export function auditKeySet(trail: AuditTrail, factoryKeys: ReadonlySet<string>, pair: string, side: "rd" | "wr", key: string, context: LogFields): WeakKeyWarning[] {
  auditKeyChange(trail, pair, side, key, context);
  const warnings = weakKeyWarnings(pair, side, key, factoryKeys);
  for (const w of warnings) trail.log.log("warn", w.message, { event: "weak-key", pair: w.pair, side: w.side, reason: w.reason });
  return warnings;
}

/** Logs a `key-changed` event for each side whose key differs between two keyrings, and a pair switched on or off. */
export function auditKeyringChanges(trail: AuditTrail, before: Keyring, after: Keyring, context: LogFields): void {
  for (const [name, pair] of after) {
    for (const side of ["rd", "wr"] as const) {
      if (before.get(name)?.[side] !== pair[side]) auditKeyChange(trail, name, side, pair[side], context);
    }
    const was = before.get(name)?.enabled ?? true;
    if (was !== pair.enabled) trail.log.log("info", pair.enabled ? "pair enabled" : "pair disabled", { event: pair.enabled ? "pair-enabled" : "pair-disabled", ...context, pair: name });
  }
}

/**
 * The warning that endpoints are open to anyone (an empty key): at every start, and whenever a key
 * is emptied at runtime, the same line, naming every endpoint open now, never a key.
 */
export function warnOpenEndpoints(log: Logger, open: readonly string[]): void {
  if (open.length > 0) log.log("warn", "endpoints open to anyone (an empty key); acceptable only before provisioning", { endpoints: open.join(",") });
}
