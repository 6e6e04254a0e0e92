/** Slows key guessing per client address (docs/api.md §5, error 12). */

import { isIPv6 } from "node:net";

/** The throttle's numbers; all configurable from the command line. */
export interface ThrottleOptions {
  /** Wrong keys within `windowMs` that block an address. */
  readonly maxFailures: number;
  readonly windowMs: number;
  /** The first block; each further offence within `offenceMemoryMs` doubles it, up to `maxBlockMs`. */
  readonly blockMs: number;
  readonly maxBlockMs: number;
  readonly offenceMemoryMs: number;
  /** Addresses remembered at once; the oldest is forgotten first. */
  readonly maxAddresses: number;
}

export const DEFAULT_THROTTLE: ThrottleOptions = Object.freeze({
  maxFailures: 10,
  windowMs: 60_000,
  blockMs: 30_000,
  maxBlockMs: 15 * 60_000,
  offenceMemoryMs: 60 * 60_000,
  maxAddresses: 10_000,
});

interface Entry {
  /** Times of the latest wrong keys, oldest first, at most maxFailures of them (a sliding window). */
  failures: number[];
  blockedUntil: number;
  offences: number;
  lastOffence: number;
}

/**
 * The address a throttle entry is kept under: IPv4 as is (also when mapped into IPv6), IPv6 by
 * its /64 prefix, since one host can take any address of its own /64.
 */
export function throttleKey(address: string): string {
  // Every keyed request asks once any address is in the table: IPv4 skips isIPv6's long regex.
  if (!address.includes(":")) return address;
  if (address.startsWith("::ffff:") && address.includes(".")) return address.slice(7);
  if (!isIPv6(address)) return address;
  const bare = address.split("%")[0] as string;
  const [head = "", tail] = bare.split("::") as [string, string | undefined];
  const headGroups = head === "" ? [] : head.split(":");
  let groups = headGroups;
  if (tail !== undefined) {
    const tailGroups = tail === "" ? [] : tail.split(":");
    const missing = 8 - headGroups.length - tailGroups.length;
    groups = [...headGroups, ...Array<string>(Math.max(missing, 0)).fill("0"), ...tailGroups];
  }
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")).join(":") + "::/64";
}

/** The table of offending addresses. */
export class Throttle {
  private readonly table = new Map<string, Entry>();

  constructor(private readonly options: ThrottleOptions = DEFAULT_THROTTLE) {}

  /** Milliseconds the address must still wait, 0 when it is not blocked. */
  blockedFor(address: string, now = Date.now()): number {
    if (this.table.size === 0) return 0;
    const entry = this.table.get(throttleKey(address));
    return entry !== undefined && entry.blockedUntil > now ? entry.blockedUntil - now : 0;
  }

  /** Counts one wrong key from the address; blocks it when the window fills up. */
  recordFailure(address: string, now = Date.now()): void {
    const key = throttleKey(address);
    const o = this.options;
    let entry = this.table.get(key);
    if (entry === undefined) {
      entry = { failures: [], blockedUntil: 0, offences: 0, lastOffence: -Infinity };
    } else {
      this.table.delete(key); // re-inserted below: the Map's order is the age order
    }
    this.table.set(key, entry);
    // A sliding window: block when the maxFailures-th most recent wrong key is within windowMs.
    entry.failures.push(now);
    if (entry.failures.length > o.maxFailures) entry.failures.shift();
    if (entry.failures.length >= o.maxFailures && now - (entry.failures[0] as number) <= o.windowMs) {
      entry.offences = now - entry.lastOffence <= o.offenceMemoryMs ? entry.offences + 1 : 1;
      entry.lastOffence = now;
      entry.blockedUntil = now + Math.min(o.blockMs * 2 ** (entry.offences - 1), o.maxBlockMs);
      entry.failures = [];
    }
    while (this.table.size > o.maxAddresses) {
      const oldest = this.table.keys().next().value as string;
      this.table.delete(oldest);
    }
  }

  /** How many addresses are remembered (bounded by maxAddresses). */
  get size(): number {
    return this.table.size;
  }
}
