/**
 * A pair's `origins` (docs/api.md §8): a comma-separated list of IPv4 and IPv6 addresses and CIDR
 * ranges, parsed once when the keyring is built, and matched against a client's socket address
 * without allocating. An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`, what a dual-stack listener
 * reports for an IPv4 client) is matched in its IPv4 form, in a list and from a client alike.
 */

import { isIPv4, isIPv6 } from "node:net";

/** Longest `origins` value accepted, and most entries. */
export const MAX_ORIGINS_LENGTH = 512;
export const MAX_ORIGINS_ENTRIES = 32;

/** One entry: an IPv4 range (32-bit value and mask) or an IPv6 range (8 groups and a prefix length). */
type Range = { readonly v4: true; readonly net: number; readonly mask: number } | { readonly v4: false; readonly groups: Uint16Array; readonly prefix: number };

/** A parsed list; `matches` answers for one client address. */
export interface Origins {
  readonly ranges: readonly Range[];
}

/** Parses an `origins` value; undefined when it breaks the rule. "" is no restriction (also undefined from originsOf). */
export function parseOrigins(text: string): Origins | undefined {
  if (text.length > MAX_ORIGINS_LENGTH) return undefined;
  const entries = text.split(",");
  if (entries.length > MAX_ORIGINS_ENTRIES) return undefined;
  const ranges: Range[] = [];
  for (const raw of entries) {
    const range = parseRange(raw.trim());
    if (range === undefined) return undefined;
    ranges.push(range);
  }
  return { ranges };
}

/** Whether a value is a valid `origins` member: "" or a list parseOrigins accepts. */
export function isValidOrigins(value: unknown): value is string {
  return typeof value === "string" && (value === "" || parseOrigins(value) !== undefined);
}

/** The parsed restriction of a stored value, or undefined for "" (any address). */
export function originsOf(value: string): Origins | undefined {
  return value === "" ? undefined : parseOrigins(value);
}

function parseRange(entry: string): Range | undefined {
  const slash = entry.indexOf("/");
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const lengthText = slash === -1 ? undefined : entry.slice(slash + 1);
  if (lengthText !== undefined && !/^(?:0|[1-9][0-9]{0,2})$/.test(lengthText)) return undefined;
  const length = lengthText === undefined ? undefined : Number(lengthText);
  if (isIPv4(address) && !/(^|\.)0[0-9]/.test(address)) {
    if (length !== undefined && length > 32) return undefined;
    const bits = length ?? 32;
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    return { v4: true, net: (ipv4Value(address, 0, address.length) & mask) >>> 0, mask };
  }
  if (address.includes("%") || !isIPv6(address)) return undefined;
  const groups = new Uint16Array(8);
  if (!parseIPv6(address, groups)) return undefined;
  if (length !== undefined && length > 128) return undefined;
  const bits = length ?? 128;
  // A mapped IPv4 address (::ffff:a.b.c.d/96+n) is an IPv4 range.
  if (isMapped(groups) && bits >= 96) {
    const mask = bits === 96 ? 0 : (0xffffffff << (128 - bits)) >>> 0;
    return { v4: true, net: ((((groups[6] as number) << 16) | (groups[7] as number)) & mask) >>> 0, mask };
  }
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, bits - i * 16));
    const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
    groups[i] = (groups[i] as number) & mask;
  }
  return { v4: false, groups, prefix: bits };
}

function isMapped(g: Uint16Array): boolean {
  return g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff;
}

/** The 32-bit value of the dotted quad text[start, end) (already known to be one); -1 when it is not. */
function ipv4Value(text: string, start: number, end: number): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      octet = octet * 10 + (c - 48);
      digits++;
      if (octet > 255 || digits > 3) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return (value * 256 + octet) >>> 0;
}

/**
 * Parses an IPv6 address (a zone after "%" ignored) into `out`, without allocating; false when it
 * is not one. The forms are those node reports and isIPv6 accepts: "::" once, an IPv4 tail.
 */
function parseIPv6(text: string, out: Uint16Array): boolean {
  let end = text.indexOf("%");
  if (end === -1) end = text.length;
  out.fill(0);
  let group = 0;
  let gap = -1;
  let i = 0;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    if (group >= 8) return false;
    // An IPv4 tail: a dot before the next colon.
    let j = i;
    let value = 0;
    let hex = 0;
    let dotted = false;
    while (j < end) {
      const c = text.charCodeAt(j);
      if (c === 58) break;
      if (c === 46) dotted = true;
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : c === 46 ? 0 : -1;
      if (d < 0) return false;
      value = value * 16 + d;
      hex++;
      j++;
    }
    if (dotted) {
      if (j !== end || group > 6) return false;
      const v4 = ipv4Value(text, i, end);
      if (v4 < 0) return false;
      out[group++] = v4 >>> 16;
      out[group++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (hex === 0 || hex > 4) return false;
    out[group++] = value;
    i = j;
    if (i < end) {
      i++; // the colon
      if (text.charCodeAt(i) === 58) {
        if (gap !== -1) return false;
        gap = group;
        i++;
      } else if (i >= end) return false;
    }
  }
  if (gap === -1) return group === 8;
  if (group > 7) return false;
  // Move the groups after the gap to the end.
  const after = group - gap;
  for (let k = 0; k < after; k++) {
    out[7 - k] = out[group - 1 - k] as number;
    out[group - 1 - k] = 0;
  }
  return true;
}

// One scratch buffer for client addresses: matching is synchronous.
const scratch = new Uint16Array(8);

/**
 * Whether a client's socket address is inside the list. IPv4 clients (and IPv4-mapped IPv6 ones)
 * are compared with the IPv4 ranges, other IPv6 clients with the IPv6 ranges. No allocation.
 */
export function originAllowed(origins: Origins, address: string): boolean {
  let v4 = -1;
  if (address.indexOf(":") === -1) v4 = ipv4Value(address, 0, address.length);
  else {
    if (!parseIPv6(address, scratch)) return false;
    if (isMapped(scratch)) v4 = (((scratch[6] as number) << 16) | (scratch[7] as number)) >>> 0;
  }
  const ranges = origins.ranges;
  for (let r = 0; r < ranges.length; r++) {
    const range = ranges[r] as Range;
    if (range.v4) {
      if (v4 >= 0 && ((v4 & range.mask) >>> 0) === range.net) return true;
      continue;
    }
    if (v4 >= 0) continue;
    let inside = true;
    for (let i = 0; i < 8 && inside; i++) {
      const keep = Math.max(0, Math.min(16, range.prefix - i * 16));
      if (keep === 0) break;
      const mask = (0xffff << (16 - keep)) & 0xffff;
      inside = ((scratch[i] as number) & mask) === range.groups[i];
    }
    if (inside) return true;
  }
  return false;
}

/** A client address as the pairs show it (`lastUsedFrom`): an IPv4-mapped IPv6 address in its IPv4 form. */
export function displayAddress(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
