/**
 * Keeping under a device's wrong-key throttle (docs/api.md §5). A rotation sends no wrong key, but
 * finding which `apikeys` key opens a device after an interrupted run tries stale keys, and the
 * device blocks an address after `maxFailures` wrong keys within `windowMs`. The tool allows itself at most maxFailures - 1 in any stretch a little longer than
 * the window, counted per device; a 429 that comes anyway is honoured by the caller.
 */

import { performance } from "node:perf_hooks";

/** What the tool assumes of the devices' throttle. */
export interface DeviceThrottle {
  readonly maxFailures: number;
  readonly windowMs: number;
}

/** The devices' default throttle (docs/api.md §5): 10 wrong keys within 60 s block an address. */
export const DEFAULT_DEVICE_THROTTLE: DeviceThrottle = Object.freeze({ maxFailures: 10, windowMs: 60_000 });

// Refusals are stamped when their answer arrives (after the device counted them) and the budget is
// checked before the next request leaves (before the device counts it), so network delays only
// widen the gap the device sees; the margin covers clock granularity.
const MARGIN_MS = 250;

/** The refusals one device has counted against us lately. */
export class RefusalBudget {
  private readonly stamps: number[] = [];

  constructor(
    private readonly throttle: DeviceThrottle,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Milliseconds to wait before a request that may be refused, 0 when it may leave now. */
  delayMs(): number {
    const span = this.throttle.windowMs + MARGIN_MS;
    const now = this.now();
    while (this.stamps.length > 0 && now - (this.stamps[0] as number) > span) this.stamps.shift();
    const allowed = Math.max(this.throttle.maxFailures - 1, 1);
    if (this.stamps.length < allowed) return 0;
    const oldestThatMustLeave = this.stamps[this.stamps.length - allowed] as number;
    return Math.max(Math.ceil(oldestThatMustLeave + span - now) + 1, 0);
  }

  /** Records one refusal (an answer 401 or 403 to a request that presented a key). */
  note(): void {
    this.stamps.push(this.now());
  }
}
