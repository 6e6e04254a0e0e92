/**
 * Warnings for a key that is set but weak: empty (the endpoint opens), a factory key (published with
 * every device), or shorter than MIN_KEY_LENGTH. The key is stored all the same (docs/api.md §4 lets
 * any key through); the warning goes to the log and, for a PUT, into the Apikeyd-Warning header of
 * the 200 answer, whose body stays the fixed success envelope. No warning ever holds the key.
 */

/**
 * Keys shorter than this are warned about. 16 characters: `keys generate` gives 32; 16 even from
 * lower-case letters alone are about 75 bits, out of reach of guessing at any rate the throttle
 * lets through, whereas 8 such letters (about 38 bits) fall to a few thousand addresses in a year.
 */
export const MIN_KEY_LENGTH = 16;

/** The response header that carries the warnings of a PUT (comma-separated, RFC 9110 list syntax). */
export const WEAK_KEY_HEADER = "Apikeyd-Warning";

export type WeakKeyReason = "empty" | "factory" | "short";

export interface WeakKeyWarning {
  readonly pair: string;
  readonly side: "rd" | "wr";
  readonly reason: WeakKeyReason;
  /** `<pair> <side> is ...`: no comma, nothing outside printable ASCII, never the key. */
  readonly message: string;
}

/** The warnings for `key` set as the `side` key of pair `pairName`; none for a strong key. */
export function weakKeyWarnings(pairName: string, side: "rd" | "wr", key: string, factoryKeys: ReadonlySet<string>): WeakKeyWarning[] {
  const pair = safeName(pairName);
  const warn = (reason: WeakKeyReason, what: string): WeakKeyWarning[] => [{ pair, side, reason, message: `${pair} ${side} ${what}` }];
  if (key === "") return warn("empty", `is empty: anyone may ${side === "rd" ? "read" : "write"}`);
  if (factoryKeys.has(key)) return warn("factory", "is a factory key (published with every device)");
  if (key.length < MIN_KEY_LENGTH) return warn("short", `is shorter than ${MIN_KEY_LENGTH} characters`);
  return [];
}

/** Every non-empty key of a factory `apikeys` document, whichever pair and side it belongs to. */
export function factoryKeysOf(apikeys: unknown): Set<string> {
  const keys = new Set<string>();
  const pairs = typeof apikeys === "object" && apikeys !== null ? (apikeys as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(pairs)) return keys;
  for (const p of pairs as unknown[]) {
    if (typeof p !== "object" || p === null) continue;
    for (const side of ["rd", "wr"]) {
      const key = (p as Record<string, unknown>)[side];
      if (typeof key === "string" && key !== "") keys.add(key);
    }
  }
  return keys;
}

/** The header value for a PUT's warnings. */
export function weakKeyHeader(warnings: readonly WeakKeyWarning[]): string {
  return warnings.map((w) => w.message).join(", ");
}

/** A pair name as warnings show it: the name rule's characters, anything else as "?" (header- and log-safe). */
function safeName(name: string): string {
  const safe = name.slice(0, 64).replace(/[^A-Za-z0-9_.-]/g, "?");
  return safe === "" ? "?" : safe;
}
