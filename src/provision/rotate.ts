/**
 * One device, start to finish: find which `apikeys` pair opens it, read every pair, give each pair
 * that is not already ours fresh keys (the `apikeys` pair last), check each change with fresh
 * requests, read the `apikeys` document back with its new key, and record the result. Every step can be interrupted: the journal line of a change is
 * on disk before the change is sent, and a later run sorts out which of the two keys each pair has.
 */

import { setTimeout as sleep } from "node:timers/promises";
import { fingerprint, generateKey, newFingerprintSecret } from "../access/keys.ts";
import { deviceRequest, DeviceError, type DeviceAnswer } from "./device-client.ts";
import type { InventoryDevice } from "./inventory.ts";
import { newPair, oldPair, type Intent } from "./journal.ts";
import { APIKEYS, samePair, type Pair } from "./keys.ts";
import { RefusalBudget, type DeviceThrottle } from "./pacing.ts";
import type { DeviceKeys } from "./secrets-file.ts";

// The tool has no device's secret: its fingerprints are keyed by one of its own, made per run and
// never stored, so they tell keys apart within a run's output and cannot be tested against guesses.
const RUN_SECRET = newFingerprintSecret();

/** What the run knows about one device before it starts on it. */
export interface DeviceJob {
  readonly device: InventoryDevice;
  /** The device's entry in the output file, if any: keys set and checked by an earlier run. */
  readonly recorded: DeviceKeys | undefined;
  /** Journal lines for this host, oldest first: changes that may or may not have reached it. */
  readonly intents: readonly Intent[];
}

/** The run's collaborators and settings. */
export interface RotateContext {
  readonly dryRun: boolean;
  /** --rotate: pairs that already hold the keys of the output file get fresh ones all the same. */
  readonly rotate?: boolean;
  readonly timeoutMs: number;
  readonly throttle: DeviceThrottle;
  /** PEM certificates trusted for HTTPS devices instead of Node's default roots (--ca). */
  readonly ca?: readonly string[];
  /** Appends a journal line and resolves once it is on disk. */
  journal(intent: Intent): Promise<void>;
  /** Records keys in the output file (`complete`: the device's whole set) and resolves once on disk. */
  record(host: string, keys: DeviceKeys, complete: boolean): Promise<void>;
  /** A progress message about a device; never holds a key. */
  event(host: string, message: string): void;
  /** Keys already in use anywhere in this run; new keys are checked against it. */
  readonly taken: Set<string>;
  /** How each change is sent (docs/provisioning.md): confirm-or-revert window, grace, label, expiry. */
  readonly change?: ChangeSettings;
  /** --seal: each device is sealed once its keys are set, checked and recorded (docs/api.md §9). */
  readonly seal?: boolean;
}

/** What the tool asks of each change besides the keys (docs/api.md §8). */
export interface ChangeSettings {
  /** Seconds the device waits for the new keys to be presented before it reverts (10 to 3600). */
  readonly confirmS: number;
  /** Seconds the replaced keys keep opening (0: none). */
  readonly graceS: number;
  readonly label?: string;
  /** `YYYY-MM-DD HH:MM:SS` (UTC); never sent for the apikeys pair, which the device refuses to expire. */
  readonly expires?: string;
}

/** Two minutes to confirm: several times what checking a change takes, short enough that a killed run's device is back on known keys soon. */
export const DEFAULT_CONFIRM_S = 120;

/** How a device ended. `changed` names the pairs whose new keys this run set or confirmed. */
export type DeviceOutcome =
  | { readonly status: "done"; readonly changed: readonly string[]; readonly sealedNow?: boolean }
  | { readonly status: "failed"; readonly reason: string; readonly changed: readonly string[] }
  | { readonly status: "planned"; readonly rotate: readonly string[]; readonly confirm: readonly string[]; readonly seal?: boolean };

/** A device that cannot be finished in this run; the reason names what went wrong. */
class DeviceFailure extends Error {}

/** One pair as the device's `apikeys` document lists it. */
interface DevicePair extends Pair {
  readonly name: string;
  readonly index: number;
  /** The key life's members (docs/api.md §8), where the device has them: previous keys still open, a change not yet confirmed. */
  readonly graceUntil?: number;
  readonly confirmUntil?: number;
}

const API = "/api/v1/";
/** Passes over a device when its keys change under us (another client, a late request). */
const MAX_PASSES = 3;
/** The longest Retry-After the tool waits for (the API reference's longest block is 15 min), and how often. */
const MAX_RETRY_AFTER_S = 15 * 60 + 1;
const MAX_THROTTLED_RETRIES = 8;
const DEFAULT_RETRY_AFTER_S = 30;

/** Brings one device to fresh keys, or (dry run) says what that would change. Never throws. */
export async function provisionDevice(job: DeviceJob, ctx: RotateContext): Promise<DeviceOutcome> {
  const run = new DeviceRun(job, ctx);
  try {
    return await run.provision();
  } catch (error) {
    const reason = error instanceof DeviceFailure || error instanceof DeviceError ? error.message : `unexpected error: ${String(error)}`;
    const changed = run.changedKeys();
    if (changed.size > 0) {
      try {
        await ctx.record(job.device.host, changed, false);
      } catch (recordError) {
        return { status: "failed", reason: `${reason}; and the output could not be written (${(recordError as Error).message}), the journal keeps the keys`, changed: [] };
      }
    }
    return { status: "failed", reason, changed: [...changed.keys()] };
  }
}

class DeviceRun {
  private readonly budget: RefusalBudget;
  private readonly host: string;
  /** Every journal line for this host, including those written by this run. */
  private readonly intents: Intent[];
  /** Pairs whose keys are known good: recorded earlier and found unchanged, or set and checked now. */
  private readonly confirmed = new Map<string, Pair>();
  private readonly changed = new Set<string>();
  /** Whether the device is sealed (docs/api.md §9): its apikeys document shows no key, only `sealed:<fingerprint>`. */
  private sealed = false;
  /** On a sealed device, which keys were found to open which pair (as it read then), by using them. */
  private readonly proofs = new Map<string, boolean>();

  constructor(
    private readonly job: DeviceJob,
    private readonly ctx: RotateContext,
  ) {
    this.budget = new RefusalBudget(ctx.throttle);
    this.host = job.device.host;
    this.intents = [...job.intents];
  }

  /** The keys this run set or confirmed, by pair. */
  changedKeys(): Map<string, Pair> {
    // A Map, not an object: pair names come from the device, and "__proto__" is one like any other.
    const keys = new Map<string, Pair>();
    for (const name of this.changed) keys.set(name, this.confirmed.get(name) as Pair);
    return keys;
  }

  async provision(): Promise<DeviceOutcome> {
    for (let pass = 1; pass <= MAX_PASSES; pass++) {
      const { auth, pairs } = await this.discover();
      if (this.ctx.dryRun) return await this.plan(pairs);
      if ((await this.reconcile(auth, pairs)) === "restart") continue;

      // Once the apikeys pair is one only we know, nothing sent with an older one can land any
      // more; read everything back once and record exactly what the device now holds.
      // Every pair must hold exactly the keys just set or confirmed: then no old key opens anything
      // (unless a grace was asked for: the previous keys of a pair in grace still open, unshown),
      // and no change waits for a confirmation that would take it back.
      const final = await this.readPairs(this.confirmed.get(APIKEYS) as Pair);
      if (final === undefined) continue;
      if (!final.every((p) => this.sameKeys(p, this.confirmed.get(p.name)))) continue;
      const graceAsked = (this.ctx.change?.graceS ?? 0) > 0;
      const pending = final.find((p) => this.changed.has(p.name) && ((p.confirmUntil ?? 0) !== 0 || (!graceAsked && (p.graceUntil ?? 0) !== 0)));
      if (pending !== undefined) throw new DeviceFailure(`${pending.name}: read back, its new keys are ${(pending.confirmUntil ?? 0) !== 0 ? "still waiting for their confirmation" : "set, but its previous keys are still in a grace period"}; re-run to finish`);
      if (this.changed.size > 0) this.ctx.event(this.host, `read back with the new apikeys key: every pair holds its new keys, no grace or confirmation pending`);
      const keys = new Map<string, Pair>(final.map((p) => [p.name, this.confirmed.get(p.name) as Pair]));
      const recorded = this.job.recorded;
      const unchanged = recorded !== undefined && recorded.size === final.length && final.every((p) => samePair(keys.get(p.name), recorded.get(p.name)));
      if (!unchanged) await this.ctx.record(this.host, keys, true);
      // Sealed last: the keys are on disk in the output file, checked, before the device forgets them.
      const sealedNow = this.ctx.seal === true && !this.sealed ? await this.sealDevice(keys.get(APIKEYS) as Pair) : false;
      return { status: "done", changed: [...this.changed], sealedNow };
    }
    throw new DeviceFailure("its keys kept changing while they were being set (is another client changing them?); re-run to finish");
  }

  /**
   * Finds the `apikeys` read key that opens the device, trying what the journal, the output file
   * and the inventory know, most likely first, and reads every pair with it.
   */
  private async discover(): Promise<{ auth: Pair; pairs: DevicePair[] }> {
    const journaled = this.intents.filter((i) => i.endpoint === APIKEYS).reverse();
    const candidates: Array<{ pair: Pair | undefined; source: string }> = [
      ...journaled.map((i) => ({ pair: newPair(i), source: "journal (new)" })),
      { pair: this.confirmed.get(APIKEYS), source: "this run" },
      { pair: this.job.recorded?.get(APIKEYS), source: "output file" },
      ...journaled.map((i) => ({ pair: oldPair(i), source: "journal (old)" })),
      { pair: this.job.device.apikeys, source: "inventory" },
    ];
    const tried = new Set<string>();
    const refused: string[] = [];
    for (const { pair, source } of candidates) {
      if (pair === undefined || tried.has(pair.rd)) continue;
      tried.add(pair.rd);
      const pairs = await this.readPairs(pair);
      if (pairs === undefined) {
        refused.push(`${source} rd ${fingerprint(pair.rd, RUN_SECRET)}`);
        continue;
      }
      const own = pairs.find((p) => p.name === APIKEYS);
      if (own === undefined) throw new DeviceFailure('its apikeys document has no pair named "apikeys"');
      if (this.sealed) {
        // A sealed device shows no key: the read key is proven by this read, the write key by a write check.
        if (!(await this.writeOpens(APIKEYS, pair))) {
          refused.push(`${source} wr ${fingerprint(pair.wr, RUN_SECRET)}`);
          continue;
        }
        this.proofs.set(proofId(own, pair), true);
        return { auth: pair, pairs };
      }
      for (const p of pairs) this.ctx.taken.add(p.rd).add(p.wr);
      return { auth: { rd: own.rd, wr: own.wr }, pairs };
    }
    const which = refused.length === 1 ? "the apikeys read key" : `all ${refused.length} apikeys read keys`;
    throw new DeviceFailure(`refused ${which} known for it (${refused.join(", ")}): wrong key in the inventory, or provisioned by someone else`);
  }

  /** Reads the `apikeys` document with `auth.rd`; undefined when that key is refused. */
  private async readPairs(auth: Pair): Promise<DevicePair[] | undefined> {
    const a = await this.send("GET", API + APIKEYS, { rd: auth.rd, mayBeRefused: true });
    if (a.status === 401) return undefined;
    if (a.status === 404) throw new DeviceFailure("has no apikeys endpoint; not an apikeyd/MKC device?");
    if (a.status !== 200 || a.error !== 0) throw new DeviceFailure(`answered HTTP ${a.status} (error ${a.error}) to reading apikeys`);
    const keys = (a.data as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys)) throw new DeviceFailure("its apikeys document has no keys array");
    this.sealed = (a.data as { sealed?: unknown }).sealed === true;
    return keys.map((p: unknown, index) => {
      const o = p as Record<string, unknown> | null;
      if (typeof o?.["name"] !== "string" || typeof o["rd"] !== "string" || typeof o["wr"] !== "string") {
        throw new DeviceFailure(`its apikeys document has a malformed pair at index ${index}`);
      }
      const life = (member: string): number | undefined => (typeof o[member] === "number" ? (o[member] as number) : undefined);
      return { name: o["name"], rd: o["rd"], wr: o["wr"], index, graceUntil: life("graceUntil"), confirmUntil: life("confirmUntil") };
    });
  }

  /** The apikeys pair last: its read key is what reads everything else. */
  private ordered(pairs: readonly DevicePair[]): DevicePair[] {
    return [...pairs.filter((p) => p.name !== APIKEYS), ...pairs.filter((p) => p.name === APIKEYS)];
  }

  /** Which pairs a run would change, and which earlier changes it would only confirm. */
  private async plan(pairs: readonly DevicePair[]): Promise<DeviceOutcome> {
    const rotate: string[] = [];
    const confirm: string[] = [];
    for (const p of this.ordered(pairs)) {
      if (await this.isRecorded(p)) continue;
      if ((await this.landedIntent(p)) !== undefined) confirm.push(p.name);
      else rotate.push(p.name);
    }
    return { status: "planned", rotate, confirm, seal: this.ctx.seal === true && !this.sealed };
  }

  /** Whether the pair holds the keys the output file has for it, and may keep them (not --rotate). */
  private async isRecorded(p: DevicePair): Promise<boolean> {
    return this.ctx.rotate !== true && (await this.holds(p, this.job.recorded?.get(p.name)));
  }

  /** The journal line whose new keys the pair holds: a change made by a run that did not check it. */
  private async landedIntent(p: DevicePair): Promise<Intent | undefined> {
    const mine = this.intents.filter((i) => i.endpoint === p.name);
    for (let i = mine.length - 1; i >= 0; i--) if (await this.holds(p, newPair(mine[i] as Intent))) return mine[i];
    return undefined;
  }

  /**
   * Whether the pair holds these keys. Unsealed, the apikeys document says; a sealed device shows
   * `sealed:<fingerprint>` only (and the tool has no device secret to compute one), so the keys are
   * tried: a read with the read key, a write check with both (an empty PUT, refused with error 9
   * after the keys passed, which also confirms a pending change). A pair without an endpoint cannot
   * be tried: keys recorded for it are taken as they are.
   */
  private async holds(p: DevicePair, keys: Pair | undefined): Promise<boolean> {
    if (keys === undefined) return false;
    if (!this.sealed) return samePair(p, keys);
    if ((p.rd === "") !== (keys.rd === "") || (p.wr === "") !== (keys.wr === "")) return false;
    const id = proofId(p, keys);
    let proof = this.proofs.get(id);
    if (proof === undefined) {
      const path = API + encodeURIComponent(p.name);
      const read = await this.send("GET", path, { rd: keys.rd, mayBeRefused: true });
      // 16 and 17 are answered only to the right keys.
      proof = read.status === 404 || read.status === 200 || read.error === 16 || read.error === 17;
      if (proof && read.status !== 404 && !this.ctx.dryRun) proof = await this.writeOpens(p.name, keys);
      this.proofs.set(id, proof);
    }
    return proof;
  }

  /** Whether both keys pass a pair's write check (an empty PUT: error 9 after the keys). */
  private async writeOpens(name: string, keys: Pair): Promise<boolean> {
    const write = await this.send("PUT", API + encodeURIComponent(name), { rd: keys.rd, wr: keys.wr, form: {}, mayBeRefused: true });
    return passedKeyCheck(write);
  }

  /** The final read agrees with what the run set or found: the keys themselves, or on a sealed device which sides are empty. */
  private sameKeys(p: DevicePair, keys: Pair | undefined): boolean {
    if (!this.sealed) return samePair(p, keys);
    return keys !== undefined && (p.rd === "") === (keys.rd === "") && (p.wr === "") === (keys.wr === "");
  }

  /** --seal: PUT sealed=true with the device's new apikeys pair (docs/api.md §9). */
  private async sealDevice(auth: Pair): Promise<boolean> {
    const a = await this.send("PUT", `${API}${APIKEYS}`, { rd: auth.rd, wr: auth.wr, form: { sealed: "true" } });
    if (a.status !== 200 || a.error !== 0) throw new DeviceFailure(`refused to be sealed (HTTP ${a.status}, error ${a.error}); its keys are recorded, run again to seal it`);
    this.sealed = true;
    this.ctx.event(this.host, "sealed: the device keeps digests only; the output file is now the only place its keys exist");
    return true;
  }

  /** Sets fresh keys on every pair that does not hold ours yet; "restart" when keys moved under us. */
  private async reconcile(start: Pair, pairs: readonly DevicePair[]): Promise<"converged" | "restart"> {
    let auth = start;
    for (const p of this.ordered(pairs)) {
      const mine = this.confirmed.get(p.name);
      if (mine !== undefined && (await this.holds(p, mine))) continue;
      if (await this.isRecorded(p)) {
        this.confirmed.set(p.name, this.job.recorded?.get(p.name) as Pair);
        continue;
      }
      const landed = await this.landedIntent(p);
      if (landed !== undefined) {
        this.ctx.event(this.host, `${p.name}: found the keys of an interrupted change; checking them`);
        if ((await this.verify(p.name, newPair(landed))) === "no endpoint") await this.settle(p, auth, newPair(landed));
        this.accept(p.name, newPair(landed));
        continue;
      }

      const fresh = this.freshPair();
      // On a sealed device the old keys are those the run knows (the apikeys pair's), or its sealed forms (never a key).
      const old = this.sealed && p.name === APIKEYS ? auth : { rd: p.rd, wr: p.wr };
      const intent: Intent = { host: this.host, endpoint: p.name, oldRd: old.rd, oldWr: old.wr, newRd: fresh.rd, newWr: fresh.wr };
      await this.ctx.journal(intent);
      this.intents.push(intent);
      // Sent with confirm: unless the checks below present the new keys in time, the device goes
      // back to the old ones, which the journal line holds, so a killed run leaves no unknown keys.
      const a = await this.send("PUT", `${API}${APIKEYS}/keys/${p.index}`, { rd: auth.rd, wr: auth.wr, form: this.changeForm(p.name, fresh) });
      // 401/403: the apikeys pair is no longer the one we read (a late request, another client);
      // 1: the pair is gone. Either way, read the device again.
      if (a.status === 401 || a.status === 403 || a.error === 1) return "restart";
      if (a.status !== 200 || a.error !== 0) throw new DeviceFailure(`refused the new keys of ${p.name} (HTTP ${a.status}, error ${a.error})`);
      const now = a.data as Record<string, unknown> | null;
      if (now?.["name"] !== p.name) throw new DeviceFailure(`its pair ${p.index} is no longer ${p.name}; re-run to finish`);
      if (now["rd"] !== fresh.rd || now["wr"] !== fresh.wr) throw new DeviceFailure(`answered the change of ${p.name} with other keys than were sent`);
      if (p.name === APIKEYS) auth = fresh;
      if ((await this.verify(p.name, fresh)) === "no endpoint") await this.settle(p, auth, fresh);
      this.accept(p.name, fresh);
    }
    return "converged";
  }

  /** The form of a change: the new keys, the confirmation window, and what --grace, --label and --expires ask. */
  private changeForm(name: string, fresh: Pair): Record<string, string> {
    const change = this.ctx.change;
    const form: Record<string, string> = { rd: fresh.rd, wr: fresh.wr };
    if (change === undefined) return form;
    form["confirm"] = String(change.confirmS);
    if (change.graceS > 0) form["grace"] = String(change.graceS);
    if (change.label !== undefined) form["label"] = change.label;
    if (change.expires !== undefined && name !== APIKEYS) form["expires"] = change.expires;
    return form;
  }

  /**
   * A pair without an endpoint cannot be confirmed by a request on it: its keys are sent again
   * without confirm, which ends the pending confirmation (a later change of a pair ends it).
   */
  private async settle(p: DevicePair, auth: Pair, fresh: Pair): Promise<void> {
    if (this.ctx.change === undefined) return;
    const a = await this.send("PUT", `${API}${APIKEYS}/keys/${p.index}`, { rd: auth.rd, wr: auth.wr, form: { rd: fresh.rd, wr: fresh.wr } });
    if (a.status !== 200 || a.error !== 0) throw new DeviceFailure(`refused to keep the new keys of ${p.name} (HTTP ${a.status}, error ${a.error})`);
  }

  private accept(name: string, keys: Pair): void {
    this.confirmed.set(name, keys);
    this.changed.add(name);
    this.ctx.event(this.host, `${name}: new keys work (rd ${fingerprint(keys.rd, RUN_SECRET)}, wr ${fingerprint(keys.wr, RUN_SECRET)})`);
  }

  /**
   * Checks a change with fresh requests to the pair's endpoint: the new read key reads, and the new
   * pair passes the write check, a PUT with an empty body, which the device refuses (error 9) after
   * the key check, so it changes nothing. That the old keys no longer open anything is not tried
   * with the old keys (each would be a wrong key, counted by the device's throttle, so the tool had
   * to pace itself: a minute per device): the device's `apikeys` document says exactly which keys
   * each pair holds, and provision() reads it back with the new `apikeys` key at the end and
   * records the device only if every pair holds exactly the new keys.
   */
  private async verify(name: string, fresh: Pair): Promise<"checked" | "no endpoint"> {
    const path = API + encodeURIComponent(name);
    const read = await this.send("GET", path, { rd: fresh.rd });
    if (read.status === 404) {
      // A pair without an endpoint: nothing to check it against but the apikeys document.
      this.ctx.event(this.host, `${name}: no such endpoint; checked through the apikeys document only`);
      return "no endpoint";
    }
    if (read.status !== 200) throw new DeviceFailure(`${name}: the new read key does not read (HTTP ${read.status}, error ${read.error})`);
    // Both new keys presented: this request also confirms a change sent with confirm.
    const write = await this.send("PUT", path, { rd: fresh.rd, wr: fresh.wr, form: {} });
    if (!passedKeyCheck(write)) throw new DeviceFailure(`${name}: the new write key is refused (HTTP ${write.status}, error ${write.error})`);
    return "checked";
  }

  /** Two keys never used before in this run nor found on the device. */
  private freshPair(): Pair {
    const next = (): string => {
      let key = generateKey();
      while (this.ctx.taken.has(key)) key = generateKey();
      this.ctx.taken.add(key);
      return key;
    };
    return { rd: next(), wr: next() };
  }

  /**
   * One request, paced under the device's throttle when it may be refused on purpose, and repeated
   * after the device's Retry-After when it answers 429 (a throttled request is not looked at, so
   * it changed nothing).
   */
  private async send(
    method: "GET" | "PUT",
    path: string,
    options: { rd?: string; wr?: string; form?: Record<string, string>; mayBeRefused?: boolean },
  ): Promise<DeviceAnswer> {
    for (let attempt = 0; ; attempt++) {
      if (options.mayBeRefused === true) {
        const wait = this.budget.delayMs();
        if (wait > 0) {
          if (wait >= 1_000) this.ctx.event(this.host, `pausing ${Math.ceil(wait / 1000)} s to stay under the device's wrong-key limit`);
          await sleep(wait);
        }
      }
      const a = await deviceRequest(this.job.device, method, path, { ...options, timeoutMs: this.ctx.timeoutMs, ca: this.ctx.ca });
      if (a.status === 429) {
        const seconds = a.retryAfterS ?? DEFAULT_RETRY_AFTER_S;
        if (seconds > MAX_RETRY_AFTER_S || attempt >= MAX_THROTTLED_RETRIES) {
          throw new DeviceFailure(`keeps answering 429 (too many wrong keys from this address; Retry-After ${seconds} s)`);
        }
        this.ctx.event(this.host, `throttled (429): waiting ${seconds} s as the device's Retry-After asks`);
        await sleep(seconds * 1000 + 100);
        continue;
      }
      const presented = (options.rd ?? "") !== "" || (options.wr ?? "") !== "";
      if ((a.status === 401 || a.status === 403) && presented) this.budget.note();
      return a;
    }
  }
}

/** The key of a proof: the pair as the device showed it, and the keys tried. */
function proofId(p: DevicePair, keys: Pair): string {
  return JSON.stringify([p.name, p.rd, p.wr, keys.rd, keys.wr]);
}

/** Whether a write check got past the keys: any refusal that comes after them in docs/api.md §5's order. */
function passedKeyCheck(a: DeviceAnswer): boolean {
  return a.status !== 401 && a.status !== 403 && a.status < 500 && a.error !== 3 && a.error !== 4;
}
