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
  /**
   * Addresses tracked at once. When the table is full, the address whose latest wrong key is oldest
   * among those never blocked is forgotten first; a blocked address is never forgotten before its
   * block ends, and an offender's history is kept for `offenceMemoryMs` when there is room (see Throttle).
   */
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

function freshEntry(): Entry {
  return { failures: [], blockedUntil: 0, offences: 0, lastOffence: -Infinity };
}

/**
 * The table of offending addresses, in two parts, both Maps in age order so that every step is O(1):
 *
 * - `watched`: addresses with wrong keys but no offence to remember, oldest wrong key first. When
 *   the table is full, the oldest of these is forgotten first: that costs it at most
 *   maxFailures - 1 counted wrong keys, and costs an attacker one wrong key per address to cause.
 * - `offenders`: addresses blocked within the last hour (offenceMemoryMs, or maxBlockMs if longer),
 *   oldest offence first. They are never forgotten to make room for a new address while blocked,
 *   and otherwise only when no watched address is left; once their hour is over they are dropped.
 *
 * When every tracked address is an offender still blocked, a new address is not tracked on its own:
 * the wrong keys of all untracked addresses are counted together in one shared entry, which blocks
 * them together. This keeps the table bounded without ever lifting a block, and keeps a crowd of
 * addresses (a botnet, or the /64s of one IPv6 /48) to the rate of a single address. The price is
 * that clients not in the table may be refused for the length of that shared block while such an
 * attack lasts; clients already tracked are judged on their own.
 */
export class Throttle {
  private readonly watched = new Map<string, Entry>();
  private readonly offenders = new Map<string, Entry>();
  private readonly untracked: Entry = freshEntry();
  /** How long an offender is kept: its block, and the memory that doubles the next one. */
  private readonly retainMs: number;

  constructor(private readonly options: ThrottleOptions = DEFAULT_THROTTLE) {
    this.retainMs = Math.max(options.offenceMemoryMs, options.maxBlockMs);
  }

  /**
   * Whether any address has sent a wrong key that still counts (or the shared entry is in use). When
   * not, no address is blocked, and the read path asks neither the socket's address nor the clock.
   */
  get watching(): boolean {
    return this.watched.size !== 0 || this.offenders.size !== 0 || this.untracked.blockedUntil !== 0;
  }

  /** Milliseconds the address must still wait, 0 when it is not blocked. */
  blockedFor(address: string, now = Date.now()): number {
    if (this.watched.size === 0 && this.offenders.size === 0 && this.untracked.blockedUntil <= now) return 0;
    const key = throttleKey(address);
    const entry = this.offenders.get(key) ?? this.watched.get(key) ?? this.untracked;
    return entry.blockedUntil > now ? entry.blockedUntil - now : 0;
  }

  /** Counts one wrong key from the address; blocks it when the window fills up. Returns the length of a block it starts, else 0. */
  recordFailure(address: string, now = Date.now()): number {
    this.forgetOldOffenders(now);
    const key = throttleKey(address);
    let entry = this.offenders.get(key);
    if (entry === undefined) {
      entry = this.watched.get(key);
      if (entry !== undefined) {
        this.watched.delete(key); // re-inserted below: the Map's order is the age order
        this.watched.set(key, entry);
      } else if (this.makeRoom(now)) {
        entry = freshEntry();
        this.watched.set(key, entry);
      } else {
        entry = this.untracked;
      }
    }
    const blocked = this.count(entry, now);
    if (blocked && entry !== this.untracked) {
      this.watched.delete(key);
      this.offenders.delete(key); // re-inserted: offenders are in the order of their latest offence
      this.offenders.set(key, entry);
    }
    return blocked ? entry.blockedUntil - now : 0;
  }

  /** Counts a wrong key in an entry; true when it starts a block. */
  private count(entry: Entry, now: number): boolean {
    const o = this.options;
    // A sliding window: block when the maxFailures-th most recent wrong key is within windowMs.
    entry.failures.push(now);
    if (entry.failures.length > o.maxFailures) entry.failures.shift();
    if (entry.failures.length < o.maxFailures || now - (entry.failures[0] as number) > o.windowMs) return false;
    entry.offences = now - entry.lastOffence <= o.offenceMemoryMs ? entry.offences + 1 : 1;
    entry.lastOffence = now;
    entry.blockedUntil = now + Math.min(o.blockMs * 2 ** (entry.offences - 1), o.maxBlockMs);
    entry.failures = [];
    return true;
  }

  /**
   * Offenders whose last offence is over retainMs old (their block is over too, since no block is
   * longer) go back among the watched addresses if they have wrong keys since, or are forgotten.
   * They leave from the front of the Map, so this is O(1) per request, amortized.
   */
  private forgetOldOffenders(now: number): void {
    for (const [key, entry] of this.offenders) {
      if (now - entry.lastOffence <= this.retainMs) return;
      this.offenders.delete(key);
      if (entry.failures.length > 0) this.watched.set(key, entry);
    }
  }

  /** Makes room for one more address if the table is full; false when every entry is a blocked offender. */
  private makeRoom(now: number): boolean {
    if (this.watched.size + this.offenders.size < this.options.maxAddresses) return true;
    for (const key of this.watched.keys()) {
      this.watched.delete(key);
      return true;
    }
    // The oldest offence is the likeliest to be over; if its block is, only its doubling history goes.
    for (const [key, entry] of this.offenders) {
      if (entry.blockedUntil > now) return false;
      this.offenders.delete(key);
      return true;
    }
    return false;
  }

  /** How many addresses are remembered (bounded by maxAddresses). */
  get size(): number {
    return this.watched.size + this.offenders.size;
  }
}
