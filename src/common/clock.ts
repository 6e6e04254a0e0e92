/**
 * The one clock of the device: writes stamp `time` with it, the throttle counts with it. Tests pass
 * their own and move it forward instead of sleeping.
 */

/** Milliseconds since the Unix epoch. */
export type Clock = () => number;

/** The system clock. */
export const SYSTEM_CLOCK: Clock = Date.now;
