/**
 * Between the I/O driver and the live document (docs/api.md §12, docs/io-driver.md): reports move
 * the points in memory (CommitQueue.applyLive: no disk write, cached answers dropped); an output
 * PUT is sent to the driver and committed only once acknowledged (the OutputGate the pipeline
 * calls); every output's value goes to each driver first; `pulse` outputs return to false.
 */

import { SYSTEM_CLOCK, type Clock } from "../common/clock.ts";
import type { Logger } from "../common/log.ts";
import type { Device, Endpoint } from "../state/device.ts";
import { deepFreeze, select, TYPE_NAME, type Json } from "../state/documents.ts";
import { isObject, type Schema } from "../state/schema.ts";
import { applyWrite } from "../state/write-rules.ts";
import { DEFAULT_BACKOFF, DriverProcess, LogBudget, type Backoff } from "./driver-process.ts";
import { OutputRefused, type GatedWrite, type OutputGate } from "./output-gate.ts";
import { changeLine, parseDriverLine, POINT_ERROR, type Point } from "./protocol.ts";

/** What the bridge needs beyond the device. */
export interface IoOptions {
  /** The driver's program and arguments (split from --io-driver by splitCommand). */
  readonly argv: readonly string[];
  /** How long an output change waits for the driver's acknowledgement (--io-timeout). */
  readonly timeoutMs: number;
  readonly log: Logger;
  readonly backoff?: Backoff;
  /** The unit of `pulse` in milliseconds (docs/io-driver.md#pulse-outputs). */
  readonly pulseUnitMs?: number;
  /** The clock of the `time` stamps. */
  readonly clock?: Clock;
  /** Added to the driver's environment (tests). */
  readonly env?: NodeJS.ProcessEnv;
}

export const DEFAULT_IO_TIMEOUT_MS = 2_000;
/** `pulse` counts tenths of a second (docs/io-driver.md#pulse-outputs). */
export const PULSE_UNIT_MS = 100;
/** The member of a data entry that holds its value. */
const PIN = "pin";
/** The members of a data entry and of its document that the bridge sets. */
const ERROR = "error";
const TIME = "time";
/** Invalid lines and unknown acknowledgements logged per second (after a burst). */
const INVALID_PER_SECOND = 5;
const INVALID_BURST = 20;

interface Pending {
  readonly entry: number;
  readonly settle: (ok: boolean | OutputRefused) => void;
}

/** Counters of what the driver did wrong (shown in the log lines, read by tests). */
export interface IoCounters {
  invalidLines: number;
  unknownAcks: number;
  timeouts: number;
}

/** The I/O driver of a device's live endpoint, and the gate of its outputs. */
export class IoBridge implements OutputGate {
  readonly counters: IoCounters = { invalidLines: 0, unknownAcks: 0, timeouts: 0 };
  private readonly liveName: string;
  private readonly live: Endpoint;
  private readonly flags: Endpoint | undefined;
  private readonly schema: Schema;
  private readonly driver: DriverProcess;
  private readonly clock: Clock;
  private readonly pulseUnitMs: number;
  private points: Point[] = [];
  /** Whether the running driver has been sent the outputs' values (so later changes may follow). */
  private ready = false;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Output changes run one after another per entry: the driver sees them in the order they are committed. */
  private readonly chains = new Map<number, Promise<void>>();
  private readonly pulses = new Map<number, NodeJS.Timeout>();
  /** Reports of this turn, the last per entry. */
  private readonly reports = new Map<number, { pin?: Json; error: number }>();
  private readonly invalidBudget = new LogBudget(INVALID_PER_SECOND, INVALID_BURST);
  private stopped = false;

  constructor(
    device: Device,
    private readonly options: IoOptions,
  ) {
    const [liveName, rule] = [...device.schema.live][0] ?? [];
    const live = liveName === undefined ? undefined : device.endpoints.get(liveName);
    if (liveName === undefined || rule === undefined || live === undefined) throw new Error("the device has no live endpoint for an I/O driver");
    this.liveName = liveName;
    this.live = live;
    this.flags = device.endpoints.get(rule.saveFlag.endpoint);
    this.schema = device.schema;
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.pulseUnitMs = options.pulseUnitMs ?? PULSE_UNIT_MS;
    this.driver = new DriverProcess({
      argv: options.argv,
      env: () => {
        this.points = this.readPoints();
        return { ...process.env, ...options.env, APIKEYD_IO_POINTS: JSON.stringify(this.points) };
      },
      log: options.log,
      backoff: options.backoff ?? DEFAULT_BACKOFF,
      handlers: {
        started: () => this.started(),
        line: (line) => this.line(line),
        tooLong: () => this.invalid("a line over the length limit"),
        turnEnd: () => this.applyReports(),
        ended: () => this.ended(),
      },
    });
  }

  /** Marks every point as driverless and starts the driver. */
  start(): void {
    this.points = this.readPoints();
    this.setErrors(() => POINT_ERROR.NO_DRIVER);
    this.driver.start();
  }

  /** Stops the driver (a clean stop of the server); outputs keep their values. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.pulses.values()) clearTimeout(timer);
    this.pulses.clear();
    await this.driver.stop();
  }

  /** The running driver's process id (tests). */
  get driverPid(): number | undefined {
    return this.driver.pid;
  }

  /** Whether a driver runs and has been given the outputs' values. */
  get driverReady(): boolean {
    return this.ready;
  }

  // ----- the gate -------------------------------------------------------------------------------

  async write(write: GatedWrite, commit: () => Promise<void>): Promise<void> {
    const entry = this.outputWritten(write);
    if (entry === undefined) return commit();
    const pin = (select(write.next, ["entries", String(entry), PIN])?.value ?? null) as Json;
    return this.serialize(entry, async () => {
      await this.request(entry, pin);
      try {
        await commit();
      } catch (error) {
        // Not durable, so not changed: the hardware goes back to the value the document keeps.
        const before = this.pinOf(entry);
        if (before !== undefined) await this.request(entry, before).catch(() => undefined);
        throw error;
      }
      this.applied(entry, pin);
    });
  }

  /** The output entry whose value a PUT names, if any. */
  private outputWritten(write: GatedWrite): number | undefined {
    if (write.endpoint !== this.liveName || !write.members.includes(PIN)) return undefined;
    const selected = select(write.next, write.segments)?.value;
    const target = isObject(selected) ? write.segments : write.segments.slice(0, -1);
    if (target.length !== 2 || target[0] !== "entries") return undefined;
    const entry = Number(target[1]);
    return this.points[entry]?.output === true ? entry : undefined;
  }

  // ----- output changes ---------------------------------------------------------------------------

  /** Runs `task` after every earlier change of the same entry has settled. */
  private serialize(entry: number, task: () => Promise<void>): Promise<void> {
    const run = (this.chains.get(entry) ?? Promise.resolve()).then(task);
    this.chains.set(
      entry,
      run.catch(() => undefined),
    );
    return run;
  }

  /** Sends one change and resolves once the driver acknowledged it; OutputRefused otherwise. */
  private request(entry: number, pin: Json): Promise<void> {
    if (!this.ready) return Promise.reject(new OutputRefused("no-driver"));
    return this.send(entry, pin);
  }

  private send(entry: number, pin: Json): Promise<void> {
    const id = this.nextId++;
    const { timeoutMs, log } = this.options;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.counters.timeouts++;
        reject(new OutputRefused("timeout"));
        this.ready = false;
        // A driver that does not answer hangs: it is killed and restarted, and gets the values again.
        this.driver.kill(`no acknowledgement of change ${id} within ${timeoutMs} ms`);
      }, timeoutMs);
      this.pending.set(id, {
        entry,
        settle: (outcome) => {
          clearTimeout(timer);
          this.pending.delete(id);
          if (outcome === true) resolve();
          else {
            if (outcome === false) log.log("warn", "I/O driver refused an output change", { id, entry });
            reject(outcome === false ? new OutputRefused("refused") : outcome);
          }
        },
      });
      if (!this.driver.send(changeLine(id, entry, pin as number | boolean))) this.pending.get(id)?.settle(new OutputRefused("no-driver"));
    });
  }

  /** After an output took a value: it shows no fault, and a pulse output is timed back to false. */
  private applied(entry: number, pin: Json): void {
    this.setErrors((i, current) => (i === entry && current >= POINT_ERROR.NO_DRIVER ? POINT_ERROR.NONE : undefined));
    clearTimeout(this.pulses.get(entry));
    this.pulses.delete(entry);
    const pulse = this.pulseOf(entry);
    if (pin !== true || pulse <= 0 || this.stopped) return;
    this.pulses.set(
      entry,
      setTimeout(() => {
        this.pulses.delete(entry);
        void this.pulseOff(entry);
      }, pulse * this.pulseUnitMs),
    );
  }

  /** A pulse output back to false, through the driver, committed like a PUT (and saved if `save`). */
  private pulseOff(entry: number): Promise<void> {
    return this.serialize(entry, async () => {
      if (this.pinOf(entry) !== true || !this.ready) return; // changed meanwhile, or no driver: its next start sends the value and times the pulse again
      try {
        await this.request(entry, false);
      } catch {
        if (this.ready) this.applied(entry, true); // refused: try again after another pulse
        return;
      }
      const now = Math.floor(this.clock() / 1000);
      try {
        const next = applyWrite(this.liveName, this.live.docs.latest, ["entries", String(entry)], { format: "json", values: new Map([[PIN, false]]) }, this.schema, now);
        await this.live.docs.change(deepFreeze(next));
      } catch (error) {
        this.options.log.log("error", "pulse output's return to false not made durable", { entry, detail: (error as NodeJS.ErrnoException).code ?? String(error) });
        await this.request(entry, true).catch(() => undefined);
        return;
      }
      this.applied(entry, false);
    });
  }

  // ----- the driver's life ------------------------------------------------------------------------

  /** A driver started: the outputs' values first, before anything else is sent. */
  private started(): void {
    this.setErrors(() => POINT_ERROR.NO_REPORT);
    this.ready = true;
    for (const point of this.points) {
      if (!point.output) continue;
      const entry = point.entry;
      void this.serialize(entry, async () => {
        const pin = this.pinOf(entry);
        if (pin === undefined) return;
        try {
          await this.request(entry, pin);
        } catch (error) {
          if (this.ready && error instanceof OutputRefused && error.reason === "refused") {
            // A fault the driver reported for this point says more than the refusal: it stays.
            this.setErrors((i, current) => (i === entry && current >= POINT_ERROR.NO_DRIVER ? POINT_ERROR.REFUSED : undefined));
          }
          return;
        }
        this.applied(entry, pin);
      });
    }
  }

  private ended(): void {
    this.ready = false;
    this.reports.clear();
    for (const p of [...this.pending.values()]) p.settle(new OutputRefused("ended"));
    for (const timer of this.pulses.values()) clearTimeout(timer);
    this.pulses.clear();
    if (!this.stopped) this.setErrors(() => POINT_ERROR.NO_DRIVER);
  }

  private line(line: string): void {
    if (!this.ready) return;
    const message = parseDriverLine(line, this.points);
    if (message.kind === "invalid") return this.invalid(message.reason);
    if (message.kind === "ack") {
      const pending = this.pending.get(message.id);
      if (pending !== undefined) return pending.settle(message.ok);
      this.counters.unknownAcks++;
      if (this.invalidBudget.take() !== undefined) {
        this.options.log.log("warn", "I/O driver acknowledged a change that is not waiting (late, or never sent)", { id: message.id, total: this.counters.unknownAcks });
      }
      return;
    }
    const before = this.reports.get(message.entry);
    this.reports.set(message.entry, { pin: message.pin ?? before?.pin, error: message.error });
  }

  private invalid(reason: string): void {
    this.counters.invalidLines++;
    const dropped = this.invalidBudget.take();
    if (dropped === undefined) return;
    this.options.log.log("warn", "I/O driver line ignored", { reason, total: this.counters.invalidLines, unlogged: dropped > 0 ? dropped : undefined });
  }

  /** This turn's reports, in one edit of the live document. */
  private applyReports(): void {
    if (this.reports.size === 0) return;
    const reports = new Map(this.reports);
    this.reports.clear();
    this.edit(reports);
  }

  // ----- the live document ------------------------------------------------------------------------

  private setErrors(errorOf: (entry: number, current: number) => number | undefined): void {
    const changes = new Map<number, { error: number }>();
    const entries = this.entries(this.live.docs.committed);
    entries.forEach((entry, i) => {
      const current = isObject(entry) && typeof entry[ERROR] === "number" ? entry[ERROR] : 0;
      const error = errorOf(i, current);
      if (error !== undefined && error !== current) changes.set(i, { error });
    });
    if (changes.size > 0) this.edit(changes);
  }

  /**
   * Sets points' values and errors in memory. A value change stamps the entry's and the
   * document's `time`; an error change alone stamps the document's only.
   */
  private edit(changes: ReadonlyMap<number, { pin?: Json; error: number }>): void {
    const now = Math.floor(this.clock() / 1000);
    const edit = (doc: Json): Json => {
      if (!isObject(doc) || !Array.isArray(doc["entries"])) return doc;
      let changed = false;
      const entries = doc["entries"].map((entry, i) => {
        const change = changes.get(i);
        if (change === undefined || !isObject(entry)) return entry;
        const valueChanged = change.pin !== undefined && entry[PIN] !== change.pin;
        if (!valueChanged && entry[ERROR] === change.error) return entry;
        changed = true;
        const next: Record<string, Json> = { ...entry, [ERROR]: change.error };
        if (valueChanged) {
          next[PIN] = change.pin as Json;
          if (TIME in entry) next[TIME] = now;
        }
        return deepFreeze(next);
      });
      if (!changed) return doc;
      return deepFreeze({ ...doc, entries, ...(TIME in doc ? { [TIME]: now } : {}) });
    };
    if (this.live.docs.applyLive(edit)) return;
    // Only a saved output's value alters the stored document, and reports never set one; should it
    // happen all the same, the change goes to disk like a PUT's.
    this.live.docs.change(edit(this.live.docs.latest)).catch((error: unknown) => {
      this.options.log.log("error", "I/O report not made durable", { detail: (error as NodeJS.ErrnoException).code ?? String(error) });
    });
  }

  private entries(doc: Json): Json[] {
    return isObject(doc) && Array.isArray(doc["entries"]) ? doc["entries"] : [];
  }

  private pinOf(entry: number): Json | undefined {
    const e = this.entries(this.live.docs.committed)[entry];
    return isObject(e) ? e[PIN] : undefined;
  }

  private pulseOf(entry: number): number {
    const flags = this.flags?.docs.committed;
    const p = isObject(flags) && Array.isArray(flags["entries"]) ? flags["entries"][entry] : undefined;
    return isObject(p) && typeof p["pulse"] === "number" && this.points[entry]?.digital === true ? p["pulse"] : 0;
  }

  /** The points as the driver is told of them: from the live document, named by the flags document (`process`). */
  private readPoints(): Point[] {
    const flags = this.flags?.docs.committed;
    const described = isObject(flags) && Array.isArray(flags["entries"]) ? flags["entries"] : [];
    return this.entries(this.live.docs.committed).map((entry, i) => {
      const typeName = isObject(entry) ? entry[TYPE_NAME] : undefined;
      const rule = typeof typeName === "string" ? this.schema.types.get(typeName) : undefined;
      const p = described[i];
      return {
        entry: i,
        name: isObject(p) && typeof p["name"] === "string" ? p["name"] : "",
        pin: isObject(p) && typeof p["pin"] === "string" ? p["pin"] : "",
        output: rule?.writable.has(PIN) === true,
        digital: isObject(entry) && typeof entry[PIN] === "boolean",
      };
    });
  }
}
