/** A pair's `expires` (docs/api.md §8): "" (never) or `YYYY-MM-DD HH:MM:SS`, a real date and time in UTC. */

const EXPIRES = /^([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})$/;

/** Milliseconds since the epoch of an `expires` value; Infinity for ""; undefined when it is not a real UTC date and time. */
export function expiresMs(text: string): number | undefined {
  if (text === "") return Infinity;
  const m = EXPIRES.exec(text);
  if (m === null) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return undefined;
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  // 2025-02-30 would roll over into March: not a real date.
  if (new Date(ms).getUTCDate() !== d) return undefined;
  return ms;
}

/** Whether a value is a valid `expires` member. */
export function isValidExpires(value: unknown): value is string {
  return typeof value === "string" && expiresMs(value) !== undefined;
}
