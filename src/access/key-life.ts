/**
 * The life of a key pair (docs/api.md §8): what a request presenting a pair's keys also has to pass
 * (enabled, not expired, from an allowed origin, with current or grace keys), and the one writer of
 * the `apikeys` document that keeps the previous keys (access/key-deadlines.ts), the deadlines of
 * grace and confirmation, and the use records (access/last-use.ts) in step with it.
 *
 * Every write of `apikeys` (a PUT, a confirmation, a revert, the end of a grace, the use records)
 * goes through one queue, so that the document and the previous keys never disagree. Deadlines are
 * read off the injected clock: a request to a pair whose confirmation deadline has passed waits for
 * the revert before its keys are checked, and a tick (every second by default) applies the deadlines
 * nobody asks about and writes the use records when their interval is up.
 */

import type { Fields } from "../http/body.ts";
import { ApiError, ERRORS } from "../http/errors.ts";
import type { Clock } from "../common/clock.ts";
import { SILENT, type LogFields, type Logger } from "../common/log.ts";
import { cloneJson, deepFreeze, select, type Json } from "../state/documents.ts";
import { isObject, type Schema } from "../state/schema.ts";
import type { CommitQueue, StoreFs } from "../state/store.ts";
import { applyWrite } from "../state/write-rules.ts";
import {
  GENERATE,
  generateKey,
  isSealedDoc,
  MIN_SEALED_KEY_LENGTH,
  SEALED_PREFIX,
  SEALED_STORED_PREFIX,
  sealDocument,
  sealKey,
  sealSalt,
  servedDocument,
  storedFingerprint,
  type KeyPair,
  type KeyringContext,
} from "./keys.ts";
import { entryMatches, keysDigest, writePreviousKeys, type PreviousEntry } from "./key-deadlines.ts";
import { DEFAULT_LAST_USE_INTERVAL_S, LastUse } from "./last-use.ts";
import { originAllowed, originsOf } from "./origins.ts";

/** The pair that guards key management: never switched off or expired over HTTP. */
const APIKEYS = "apikeys";
/** The request fields of a key change (never members). */
export const GRACE_FIELD = "grace";
export const CONFIRM_FIELD = "confirm";
export const MAX_GRACE_S = 604_800;
export const MIN_CONFIRM_S = 10;
export const MAX_CONFIRM_S = 3600;
const INTEGER_TEXT = /^(?:0|[1-9][0-9]*)$/;

/** How the life rules are run: the clock, where audit lines go, how often things happen. */
export interface KeyLifeOptions {
  readonly clock: Clock;
  readonly log: Logger;
  /** Milliseconds between two writes of the use records (docs: --last-use-interval). */
  readonly lastUseIntervalMs?: number;
  /** Milliseconds between two looks at the deadlines (tests shorten it). */
  readonly tickMs?: number;
}

/** What a PUT on `apikeys` wrote: the document as committed, and the pair before and after (when the PUT was on one). */
export interface KeyWrite {
  readonly before: Record<string, unknown> | undefined;
  readonly after: Record<string, unknown> | undefined;
  /**
   * The keys this PUT set, in clear, by side (a generated one included): the audit's fingerprints,
   * and the one answer that shows a key on a sealed device (docs/api.md §9).
   */
  readonly clear?: Partial<Record<"rd" | "wr", string>>;
  /** The PUT sealed the device. */
  readonly sealed?: boolean;
}

/** Whether a pair stops a request whose keys were right: 16 (off, expired) or 17 (origin); undefined when it may pass. */
export function lifeRefusal(pair: KeyPair, now: number, address: string): ApiError | undefined {
  if (!pair.enabled) return new ApiError(ERRORS.KEY_INACTIVE, "the keys are right, but this key pair is switched off (enabled is false)");
  if (now >= pair.expiresMs) return new ApiError(ERRORS.KEY_INACTIVE, "the keys are right, but this key pair has expired");
  if (pair.origins !== undefined && !originAllowed(pair.origins, address)) return new ApiError(ERRORS.ORIGIN_DENIED, "the keys are right, but not from this client address (the pair's origins)");
  return undefined;
}

/** The life rules of one device's pairs. */
export class KeyLife {
  readonly uses = new LastUse();
  #previous: Map<string, PreviousEntry>;
  #docs: CommitQueue<Json> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #options: Required<KeyLifeOptions> = { clock: Date.now, log: SILENT, lastUseIntervalMs: DEFAULT_LAST_USE_INTERVAL_S * 1000, tickMs: 1000 };
  #timer: NodeJS.Timeout | undefined;
  /** When the use records were last written (the clock's ms); undefined: not since the start. */
  #lastFlushMs: number | undefined;
  /** What the use records said when last written, by pair: to tell whether a tick has anything to write. */
  readonly #flushed = new Map<string, number>();
  #ticking = false;
  /** Expiries already announced in the log, by pair: one line per expiry reached. */
  readonly #announced = new Map<string, number>();

  constructor(
    private readonly stateDir: string,
    private readonly fs: StoreFs,
    private readonly secret: Buffer,
    private readonly schema: Schema,
    previous: Map<string, PreviousEntry>,
    /** Rebuilds the device's keyring (after the previous keys changed). */
    private readonly rebuild: () => void,
  ) {
    this.#previous = previous;
  }

  /** What the keyring takes from here: the previous keys that match their pair, and the use records. */
  readonly context: KeyringContext = {
    salt: () => sealSalt(this.secret),
    previousOf: (name, pair) => {
      const entry = this.#previous.get(name);
      return entryMatches(this.secret, entry, pair) ? entry : undefined;
    },
    useOf: (name, pair) => this.uses.recordOf(name, pair),
  };

  /** The `apikeys` document's queue (set once the endpoints are wired). */
  attach(docs: CommitQueue<Json>): void {
    this.#docs = docs;
  }

  /** Starts the tick with the server's clock and log; the first tick applies what passed while the device was off. */
  start(options: KeyLifeOptions): void {
    this.#options = { ...this.#options, ...definedOnly(options) };
    this.#lastFlushMs = undefined;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = setInterval(() => void this.tick(), this.#options.tickMs);
    this.#timer.unref();
    void this.tick();
  }

  /** A clean stop: no more ticks, the use records written. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flushUses().catch((error: unknown) => this.#options.log.log("error", "last use not written", { detail: errorCode(error) }));
  }

  /** The document as answers show it: the use records merged in, a sealed device's keys as `sealed:<fingerprint>`. */
  live(doc: Json): Json {
    return servedDocument(this.uses.merged(doc));
  }

  /**
   * What the answer to a PUT on `apikeys` shows at `segments`: the document as reads show it, with
   * the keys that PUT set in clear (docs/api.md §9: on a sealed device, the one answer that shows them).
   */
  answerOf(committed: Json, segments: readonly string[], written: KeyWrite): Json | undefined {
    const shown = cloneJson(this.live(committed));
    const clear = written.clear ?? {};
    if (segments.length >= 2 && segments[0] === "keys") {
      const pair = select(shown, segments.slice(0, 2))?.value;
      if (isObject(pair)) for (const [side, key] of Object.entries(clear)) (pair as Record<string, Json>)[side] = key;
    }
    return select(shown, segments)?.value as Json | undefined;
  }

  /** Answers of `apikeys` by request path, good while the committed document and the uses' seconds stay. */
  readonly #answers = new Map<string, Buffer>();
  #answersOf: Json | undefined;

  /**
   * The cached answer of a read of `apikeys` at `path`, if still good: the document is the one it
   * was made from and no pair's last use moved to another second or address since. Reads of
   * `apikeys` stay a map lookup and a few comparisons (the whole-document read of the benchmark).
   */
  cachedAnswer(committed: Json, path: string): Buffer | undefined {
    if (committed !== this.#answersOf || !this.uses.unchanged()) {
      this.#answers.clear();
      this.#answersOf = committed;
      return undefined;
    }
    return this.#answers.get(path);
  }

  /** Keeps an answer made from live(committed) for cachedAnswer (bounded, like the endpoints' caches). */
  cacheAnswer(path: string, body: Buffer): void {
    if (this.#answers.size >= 128) this.#answers.clear();
    this.#answers.set(path, body);
  }

  /**
   * One look at the clock: deadlines, expiries, and the use records when their interval is up. The
   * clock is read only when one of them may be due (nothing to do costs a loop over the pairs).
   */
  async tick(): Promise<void> {
    if (this.#ticking || !this.timeMatters()) return;
    this.#ticking = true;
    try {
      const now = this.#options.clock();
      this.#lastFlushMs ??= now;
      await this.applyDue(now);
      this.announceExpiries(now);
      if (now - this.#lastFlushMs >= this.#options.lastUseIntervalMs) await this.flushUses();
    } catch (error) {
      this.#options.log.log("error", "key deadlines not applied; retrying", { detail: errorCode(error) });
    } finally {
      this.#ticking = false;
    }
  }

  /** Runs the writes of `apikeys` one after another. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  private audit(level: "info" | "warn", message: string, fields: LogFields): void {
    this.#options.log.log(level, message, fields);
  }

  private fp(key: string): string {
    return storedFingerprint(key, this.secret);
  }

  /**
   * A PUT on `apikeys`: the members as write-rules.ts checks them, the request fields `grace` and
   * `confirm`, the guards of the `apikeys` pair, then the previous keys (durable first) and the
   * document (durable before the answer). Throws the request's ApiError.
   */
  put(segments: readonly string[], fields: Fields, client: string, now: number, authorizeAgain?: () => void): Promise<KeyWrite> {
    return this.serial(async () => {
      // The request's keys against the keys as every change queued before it left them (a PUT whose
      // body arrived after its pair was rotated must not undo the rotation).
      authorizeAgain?.();
      const docs = this.docs();
      const onPair = segments.length >= 2 && segments[0] === "keys";
      const split = onPair && segments.length === 2 ? splitRequestFields(fields) : { members: fields, grace: undefined, confirm: undefined };
      const { grace, confirm } = split;
      // rd=generate / wr=generate: the device makes the key (docs/api.md §9).
      const { members, clear, generated } = onPair ? generateKeys(split.members) : { members: split.members, clear: {}, generated: new Set<string>() };
      const nowS = Math.floor(now / 1000);
      const base = this.uses.merged(docs.latest);
      const sealed = isSealedDoc(base);
      const next = applyWrite(APIKEYS, base, segments, members, this.schema, nowS);
      const graceS = grace === undefined ? undefined : requestSeconds(GRACE_FIELD, grace, members.format, 0, MAX_GRACE_S);
      const confirmS = confirm === undefined ? undefined : requestSeconds(CONFIRM_FIELD, confirm, members.format, MIN_CONFIRM_S, MAX_CONFIRM_S);
      if (!onPair) {
        if (sealed && !isSealedDoc(next)) throw new ApiError(ERRORS.INVALID_VALUE, "a sealed device cannot be unsealed over HTTP (offline: apikeyd reset --keys-only)");
        if (!sealed && isSealedDoc(next)) {
          await this.seal(next, client);
          return { before: undefined, after: undefined, sealed: true };
        }
        await this.commit(next, undefined);
        return { before: undefined, after: undefined };
      }
      const before = select(base, segments.slice(0, 2))?.value as Record<string, Json>;
      const after = select(next, segments.slice(0, 2))?.value as Record<string, Json>;
      for (const [side, key] of Object.entries(clear)) {
        if (generated.has(side)) continue;
        if (key.startsWith(SEALED_PREFIX) || key.startsWith(SEALED_STORED_PREFIX)) {
          throw new ApiError(ERRORS.INVALID_VALUE, `${side} cannot start with sealed: or $sha256$ (what a sealed device shows and keeps in place of a key)`);
        }
        if (sealed && key !== "" && key.length < MIN_SEALED_KEY_LENGTH) {
          throw new ApiError(ERRORS.INVALID_VALUE, `${side} takes, on a sealed device, generate, "" or a key of at least ${MIN_SEALED_KEY_LENGTH} characters`);
        }
        // A sealed device keeps the digest only: the key itself leaves in this PUT's answer and nowhere else.
      }
      if (sealed) for (const side of Object.keys(clear)) after[side] = sealKey(String(after[side]), this.secret);
      const keysNamed = members.values.has("rd") || members.values.has("wr");
      // grace and confirm belong to a change of keys.
      if ((graceS !== undefined || confirmS !== undefined) && !keysNamed) throw new ApiError(ERRORS.INVALID_VALUE, "grace and confirm go with a change of rd or wr");
      if (after["name"] === APIKEYS) guardKeyManagement(members, after, client);
      let entries: Map<string, PreviousEntry> | undefined;
      if (keysNamed && "changed" in after) {
        after["changed"] = nowS;
        const graceUntil = graceS !== undefined && graceS > 0 ? nowS + graceS : 0;
        const confirmUntil = confirmS !== undefined ? nowS + confirmS : 0;
        // A later change ends an earlier grace or pending confirmation.
        after["graceUntil"] = graceUntil;
        after["confirmUntil"] = confirmUntil;
        const name = String(after["name"]);
        entries = new Map(this.#previous);
        if (graceUntil > 0 || confirmUntil > 0) {
          entries.set(name, { rd: String(before["rd"]), wr: String(before["wr"]), for: keysDigest(this.secret, String(after["rd"]), String(after["wr"])), graceUntil, confirmUntil });
        } else entries.delete(name);
      }
      await this.commit(next, entries, true);
      this.auditPut(before, after, keysNamed, client);
      return { before, after, clear };
    });
  }

  /**
   * Seals the device (docs/api.md §9): every key, current and in grace, replaced by its sealed
   * record, in one durable change. previous.keys first (its entries sealed, tied to the pair's
   * sealed keys, the file marked sealed), then apikeys.json: a crash in between leaves no key in
   * clear in previous.keys and loses none, since the next start finds the marked file beside an
   * unsealed apikeys.json whose sealed keys it matches, and finishes the sealing before it serves.
   */
  private async seal(next: Json, client: string): Promise<void> {
    const sealedDoc = sealDocument(next, this.secret);
    let entries: Map<string, PreviousEntry> | undefined;
    if (this.#previous.size > 0) {
      entries = new Map();
      for (const [name, entry] of this.#previous) {
        const pair = pairNamed(next, name);
        const sealedPair = pairNamed(sealedDoc, name);
        if (pair === undefined || sealedPair === undefined || !entryMatches(this.secret, entry, pair)) continue;
        const rd = sealKey(entry.rd, this.secret);
        const wr = sealKey(entry.wr, this.secret);
        entries.set(name, { ...entry, rd, wr, for: keysDigest(this.secret, String(sealedPair["rd"]), String(sealedPair["wr"])) });
      }
    }
    await this.commit(sealedDoc, entries, true);
    this.audit("warn", "keys sealed: from now on the device keeps digests only and shows no key again", { event: "keys-sealed", client });
  }

  /** Makes `next` (and the previous keys, when they change: first) durable; 13 when it cannot be. */
  private async commit(next: Json, entries: Map<string, PreviousEntry> | undefined, entriesFirst = false): Promise<void> {
    const docs = this.docs();
    const old = this.#previous;
    try {
      const sealed = isSealedDoc(next);
      if (entries !== undefined && entriesFirst) await this.savePrevious(entries, sealed);
      await docs.change(deepFreeze(next));
      if (entries !== undefined && !entriesFirst) await this.savePrevious(entries, sealed);
    } catch (error) {
      if (error instanceof ApiError) throw error;
      this.#options.log.log("error", "change not made durable", { endpoint: APIKEYS, detail: errorCode(error) });
      if (this.#previous !== old) {
        this.#previous = old;
        await writePreviousKeys(this.fs, this.stateDir, old, isSealedDoc(docs.committed)).catch(() => undefined);
      }
      this.rebuild();
      throw new ApiError(ERRORS.STORAGE, "the change could not be made durable, so nothing changed; the device's log says why");
    }
    this.rebuild();
  }

  private async savePrevious(entries: Map<string, PreviousEntry>, sealed: boolean): Promise<void> {
    this.#previous = entries;
    await writePreviousKeys(this.fs, this.stateDir, entries, sealed);
  }

  private auditPut(before: Record<string, unknown>, after: Record<string, unknown>, keysNamed: boolean, client: string): void {
    const pair = String(after["name"]);
    const context = { client, pair };
    if (before["enabled"] !== after["enabled"]) {
      this.audit("info", after["enabled"] === true ? "pair enabled" : "pair disabled", { event: after["enabled"] === true ? "pair-enabled" : "pair-disabled", ...context });
    }
    for (const member of ["expires", "origins", "label"] as const) {
      if (before[member] !== after[member]) this.audit("info", `pair ${member} changed`, { event: "pair-changed", ...context, member });
    }
    if (!keysNamed) return;
    const graceUntil = Number(after["graceUntil"] ?? 0);
    const confirmUntil = Number(after["confirmUntil"] ?? 0);
    if (graceUntil > 0) this.audit("info", "previous keys open until the grace ends", { event: "grace-started", ...context, until: graceUntil, rd: this.fp(String(before["rd"])), wr: this.fp(String(before["wr"])) });
    if (confirmUntil > 0) this.audit("info", "key change waits for confirmation", { event: "confirm-pending", ...context, until: confirmUntil });
  }

  /**
   * A request presented the pair's new keys before the deadline: the change stays. Durable before
   * the request goes on (a confirmation that a crash could lose would revert at the next start).
   */
  confirm(name: string, client: string): Promise<void> {
    return this.serial(async () => {
      const docs = this.docs();
      const next = cloneJson(docs.latest);
      const pair = pairNamed(next, name);
      const entry = this.#previous.get(name);
      if (pair === undefined || !entryMatches(this.secret, entry, pair) || !(Number(pair["confirmUntil"]) > 0)) return; // confirmed, or reverted, meanwhile
      pair["confirmUntil"] = 0;
      const entries = new Map(this.#previous);
      if (entry.graceUntil > 0) entries.set(name, { ...entry, confirmUntil: 0 });
      else entries.delete(name);
      await this.commit(next, entries);
      this.audit("info", "key change confirmed", { event: "key-confirmed", pair: name, client, rd: this.fp(String(pair["rd"])), wr: this.fp(String(pair["wr"])) });
    });
  }

  /**
   * Applies every deadline that has passed by `now`: an unconfirmed change reverts to its previous
   * keys, a grace ends (its keys are forgotten). Previous keys that no pair refers to are dropped,
   * and deadlines whose keys are gone are cleared. The document first, then the previous keys.
   */
  applyDue(now: number): Promise<void> {
    return this.serial(async () => {
      const docs = this.docs();
      const doc = docs.latest;
      if (!isObject(doc) || !Array.isArray(doc["keys"])) return;
      const next = cloneJson(doc) as { keys: Json[] };
      const entries = new Map(this.#previous);
      const names = new Set<string>();
      const lines: Array<() => void> = [];
      let changed = false;
      for (const raw of next.keys) {
        if (!isObject(raw)) continue;
        const pair = raw as Record<string, Json>;
        const name = String(pair["name"]);
        names.add(name);
        const entry = entries.get(name);
        const graceUntil = Number(pair["graceUntil"] ?? 0);
        const confirmUntil = Number(pair["confirmUntil"] ?? 0);
        if (!entryMatches(this.secret, entry, pair)) {
          if (entry !== undefined) entries.delete(name);
          if (graceUntil > 0 || confirmUntil > 0) {
            pair["graceUntil"] = 0;
            pair["confirmUntil"] = 0;
            changed = true;
            lines.push(() => this.audit("warn", "previous keys missing; the pair keeps its current keys", { event: "deadline-dropped", pair: name }));
          }
          continue;
        }
        if (confirmUntil > 0 && now >= confirmUntil * 1000) {
          pair["rd"] = entry.rd;
          pair["wr"] = entry.wr;
          pair["changed"] = Math.floor(now / 1000);
          pair["graceUntil"] = 0;
          pair["confirmUntil"] = 0;
          entries.delete(name);
          changed = true;
          lines.push(() => this.audit("warn", "key change not confirmed in time: previous keys restored", { event: "key-reverted", source: "confirm-deadline", pair: name, rd: this.fp(entry.rd), wr: this.fp(entry.wr) }));
        } else if (graceUntil > 0 && now >= graceUntil * 1000) {
          pair["graceUntil"] = 0;
          if (confirmUntil > 0) entries.set(name, { ...entry, graceUntil: 0 });
          else entries.delete(name);
          changed = true;
          lines.push(() => this.audit("info", "grace over: previous keys no longer open", { event: "grace-ended", pair: name }));
        }
      }
      for (const name of entries.keys()) if (!names.has(name)) entries.delete(name);
      const entriesChanged = entries.size !== this.#previous.size || [...entries].some(([n, e]) => this.#previous.get(n) !== e);
      if (!changed && !entriesChanged) return;
      await this.commit(changed ? next : doc, entriesChanged ? entries : undefined);
      for (const line of lines) line();
    });
  }

  /** Whether a tick has anything to look at: a deadline, an expiry, a use not yet written, or previous keys to tidy. */
  private timeMatters(): boolean {
    if (this.#previous.size > 0) return true;
    const doc = this.#docs?.committed;
    if (!isObject(doc) || !Array.isArray(doc["keys"])) return false;
    for (const pair of doc["keys"]) {
      if (!isObject(pair)) continue;
      if (Number(pair["graceUntil"] ?? 0) > 0 || Number(pair["confirmUntil"] ?? 0) > 0 || (pair["expires"] ?? "") !== "") return true;
      const record = this.uses.recordOf(String(pair["name"]), pair);
      if (record.ms !== 0 && record.ms !== this.#flushed.get(String(pair["name"]))) return true;
    }
    return false;
  }

  /** One `key-expired` line per expiry reached (also for one reached while the device was off). */
  private announceExpiries(now: number): void {
    const doc = this.#docs?.committed;
    if (!isObject(doc) || !Array.isArray(doc["keys"])) return;
    for (const pair of doc["keys"]) {
      if (!isObject(pair) || typeof pair["expires"] !== "string" || pair["expires"] === "") continue;
      const name = String(pair["name"]);
      const at = Date.parse(pair["expires"].replace(" ", "T") + "Z");
      if (now < at || this.#announced.get(name) === at) continue;
      this.#announced.set(name, at);
      this.audit("warn", "key pair expired", { event: "key-expired", pair: name, expires: pair["expires"] });
    }
  }

  /** Writes the use records into the document (when they differ from it). */
  flushUses(): Promise<void> {
    return this.serial(async () => {
      this.#lastFlushMs = this.#options.clock();
      const docs = this.#docs;
      if (docs === undefined) return;
      const merged = this.uses.merged(docs.latest);
      if (merged !== docs.latest) await this.commit(merged, undefined);
      this.uses.forEach((name, record) => this.#flushed.set(name, record.ms));
    });
  }

  private docs(): CommitQueue<Json> {
    if (this.#docs === undefined) throw new Error("key life: the apikeys document is not attached");
    return this.#docs;
  }
}

/** Splits `grace` and `confirm` off a PUT's fields: they are request fields, not members. */
function splitRequestFields(fields: Fields): { members: Fields; grace: unknown; confirm: unknown } {
  if (!fields.values.has(GRACE_FIELD) && !fields.values.has(CONFIRM_FIELD)) return { members: fields, grace: undefined, confirm: undefined };
  const values = new Map(fields.values);
  const grace = values.get(GRACE_FIELD);
  const confirm = values.get(CONFIRM_FIELD);
  values.delete(GRACE_FIELD);
  values.delete(CONFIRM_FIELD);
  return { members: { format: fields.format, values }, grace, confirm };
}

/**
 * `rd=generate` / `wr=generate` replaced by a fresh key (the generator of `keys generate`); returns
 * the keys the PUT names, in clear, and which of them the device made.
 */
function generateKeys(fields: Fields): { members: Fields; clear: Partial<Record<"rd" | "wr", string>>; generated: Set<string> } {
  const clear: Partial<Record<"rd" | "wr", string>> = {};
  const generated = new Set<string>();
  let values: ReadonlyMap<string, unknown> = fields.values;
  for (const side of ["rd", "wr"] as const) {
    const value = values.get(side);
    if (value === GENERATE) {
      const copy = new Map(values);
      const key = generateKey();
      copy.set(side, key);
      values = copy;
      generated.add(side);
      clear[side] = key;
    } else if (typeof value === "string") clear[side] = value;
  }
  return { members: values === fields.values ? fields : { format: fields.format, values }, clear, generated };
}

/** A whole number of seconds in [min, max] (form text, or a JSON integer); 8 otherwise. */
function requestSeconds(name: string, raw: unknown, format: "form" | "json", min: number, max: number): number {
  const n = format === "form" ? (typeof raw === "string" && INTEGER_TEXT.test(raw) ? Number(raw) : NaN) : typeof raw === "number" ? raw : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ApiError(ERRORS.INVALID_VALUE, `${name} takes whole seconds from ${min} to ${max}`);
  return n;
}

/**
 * No single request may lock everyone out of key management: the `apikeys` pair is never switched
 * off or given an expiry over HTTP, and its `origins` must keep the requesting client inside.
 */
function guardKeyManagement(members: Fields, after: Record<string, unknown>, client: string): void {
  if (members.values.has("enabled") && after["enabled"] !== true) throw new ApiError(ERRORS.INVALID_VALUE, "the apikeys pair cannot be switched off over HTTP (offline: apikeyd keys set)");
  if (members.values.has("expires") && after["expires"] !== "") throw new ApiError(ERRORS.INVALID_VALUE, "the apikeys pair cannot be given an expiry over HTTP (offline: apikeyd keys set)");
  if (members.values.has("origins") && typeof after["origins"] === "string") {
    const origins = originsOf(after["origins"]);
    if (origins !== undefined && !originAllowed(origins, client)) throw new ApiError(ERRORS.INVALID_VALUE, "these origins would leave this client outside the apikeys pair: include its address");
  }
}

function pairNamed(doc: Json, name: string): Record<string, Json> | undefined {
  if (!isObject(doc) || !Array.isArray(doc["keys"])) return undefined;
  return doc["keys"].find((p) => isObject(p) && p["name"] === name) as Record<string, Json> | undefined;
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error));
}

function definedOnly(options: KeyLifeOptions): Partial<Required<KeyLifeOptions>> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<Required<KeyLifeOptions>>;
}
