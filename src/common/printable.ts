/**
 * Text that came from outside (a device, a file another user can write) made safe to print on a
 * terminal: control characters (C0, DEL, C1) and the invisible direction marks and overrides that
 * reorder what a reader sees are written as \u escapes instead of being sent raw.
 */

// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control or bidi character written as \uXXXX. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
