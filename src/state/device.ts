/**
 * The device: its endpoints, loaded and validated once at start-up from the config folder (factory
 * defaults, never written) and the state folder (the live documents), then served from memory.
 */

import { join } from "node:path";
import type { PreviousEntry } from "../access/key-deadlines.ts";
import { KeyLife } from "../access/key-life.ts";
import { buildKeyring, isSealedDoc, sealKey, type Keyring } from "../access/keys.ts";
import { deepFreeze, type Json } from "./documents.ts";
import { wireEndpoints } from "./endpoint-wiring.ts";
import { keepSavedEntries } from "./live-data.ts";
import type { Schema } from "./schema.ts";
import { fileText, readStateFile } from "./state-file.ts";
import type { CommitQueue, StoreFs } from "./store.ts";

/** The endpoint that is always open and read-only (docs/api.md §3). */
export const DEVICE_ENDPOINT = "device";
/** The endpoint that holds the key pairs. */
export const APIKEYS_ENDPOINT = "apikeys";

/** A file of the config or state folder that holds an endpoint's document; group 1 is its name. */
export const ENDPOINT_FILE = /^([A-Za-z0-9_-][A-Za-z0-9_.-]*)\.json$/;

/** One endpoint being served. */
export interface Endpoint {
  readonly name: string;
  /** Whether PUT is allowed at all (405 otherwise). */
  readonly writable: boolean;
  /** Whether its pair's keys are checked; false only for `device`, open to all (docs/api.md §3). */
  readonly keyed: boolean;
  readonly docs: CommitQueue<Json>;
  /** Serialized answers of the committed document by request path, emptied by every commit. */
  readonly answers: Map<string, Buffer>;
}

/** A start-up refusal: the message says which file and what is wrong. */
export class StartupError extends Error {
  override name = "StartupError";
}

/** A reload refused (the state folder does not pass the start-up checks); the old state stays. */
export class ReloadError extends Error {
  override name = "ReloadError";
}

/** Rounds of reading the state folder before a reload under constant writes gives up. */
const RELOAD_ATTEMPTS = 10;

/** The loaded device (loadDevice builds it). Its keyring always reflects the committed `apikeys` document. */
export class Device {
  readonly endpoints: ReadonlyMap<string, Endpoint>;
  #keyring: Keyring = new Map();
  /** How each endpoint's document is written to its state file. */
  readonly #persist: ReadonlyMap<string, (doc: Json) => string>;
  /** File writes under way (commits, and the rewrites that follow a failed one). */
  #writesInFlight = 0;
  /** The life of the key pairs (docs/api.md §8): previous keys, deadlines, last use; the one writer of `apikeys`. */
  readonly keyLife: KeyLife;
  /** Told of every commit (and every document a reload swaps in): see onCommit. */
  readonly #commitListeners = new Set<(endpoint: string, doc: Json) => void>();

  constructor(
    readonly schema: Schema,
    readonly factory: ReadonlyMap<string, Json>,
    readonly stateDir: string,
    stored: ReadonlyMap<string, Json>,
    fs: StoreFs,
    /** The key of the fingerprints that audit lines give keys (access/fingerprint-secret.ts). */
    readonly fingerprintSecret: Buffer,
    /** The keys that grace periods and pending confirmations keep (`<state>/previous.keys`). */
    previous: Map<string, PreviousEntry> = new Map(),
  ) {
    this.keyLife = new KeyLife(stateDir, fs, fingerprintSecret, schema, previous, () => this.rebuildKeyring());
    const wired = wireEndpoints(stored, factory, schema, stateDir, fs, {
      committed: (name, doc) => {
        if (name === APIKEYS_ENDPOINT) this.#keyring = buildKeyring(doc, this.keyLife.context);
        for (const listener of this.#commitListeners) {
          try {
            listener(name, doc);
          } catch {
            // A listener's fault is its own: the commit stands.
          }
        }
      },
      writing: (delta) => {
        this.#writesInFlight += delta;
      },
    });
    this.endpoints = wired.endpoints;
    this.#persist = wired.persist;
    const apikeys = this.endpoints.get(APIKEYS_ENDPOINT);
    if (apikeys !== undefined) this.keyLife.attach(apikeys.docs);
  }

  /** Builds the keyring again from the committed `apikeys` (the previous keys changed). */
  private rebuildKeyring(): void {
    const apikeys = this.endpoints.get(APIKEYS_ENDPOINT);
    if (apikeys !== undefined) this.#keyring = buildKeyring(apikeys.docs.committed, this.keyLife.context);
  }

  /** A clean stop: the use records written, every change under way on disk. */
  async close(): Promise<void> {
    await this.keyLife.stop();
    await this.idle();
  }

  /** The key pairs by endpoint name, as committed. */
  get keyring(): Keyring {
    return this.#keyring;
  }

  /**
   * Calls `listener` after each commit of any endpoint's document (a PUT, a reload), with the
   * committed document. Returns the function that stops it.
   */
  onCommit(listener: (endpoint: string, doc: Json) => void): () => void {
    this.#commitListeners.add(listener);
    return () => this.#commitListeners.delete(listener);
  }

  /** Resolves once every change under way is on disk (for a clean stop). */
  async idle(): Promise<void> {
    await Promise.all([...this.endpoints.values()].map((e) => e.docs.idle()));
  }

  /**
   * Re-reads the state folder (SIGHUP): every file is checked as at start-up, and only if all pass
   * are the documents whose files changed swapped in; otherwise ReloadError, and the device keeps
   * serving what it had. Returns the names of the endpoints that changed. A `data` file contributes
   * its saved outputs only, as at start; the live values of the others stay.
   */
  async reload(): Promise<string[]> {
    for (let attempt = 0; attempt < RELOAD_ATTEMPTS; attempt++) {
      await this.idle();
      const before = new Map([...this.endpoints].map(([name, e]) => [name, e.docs.committed]));
      const files = new Map<string, Json>();
      const problems: string[] = [];
      for (const name of this.endpoints.keys()) {
        if (name === DEVICE_ENDPOINT) continue; // served from the installed config, as at start
        const file = await readStateFile(this.stateDir, name, this.factory.get(name) as Json, this.schema);
        if (file.status === "missing") problems.push(`${join(this.stateDir, name + ".json")}: missing (a restart seeds it from the factory default)`);
        else if (file.status === "invalid") problems.push(...file.problems);
        // By content, not by bytes: a file a technician saved in another layout has not changed.
        else if (fileText(file.doc) !== this.#persist.get(name)?.(before.get(name) as Json)) files.set(name, file.doc);
      }
      if (problems.length > 0) throw new ReloadError(problems.join("\n"));
      // From here on nothing awaits, so no request runs in between. A write that committed or is
      // under way while the files were read may not be in what was read: read again.
      const busy = this.#writesInFlight > 0 || [...this.endpoints].some(([name, e]) => e.docs.committed !== before.get(name) || e.docs.latest !== e.docs.committed);
      if (busy) continue;
      const plainFirst = [...files].sort(([a], [b]) => Number(this.schema.live.has(a)) - Number(this.schema.live.has(b)));
      for (const [name, doc] of plainFirst) {
        const endpoint = this.endpoints.get(name) as Endpoint;
        const live = this.schema.live.get(name);
        const flags = live === undefined ? undefined : this.endpoints.get(live.saveFlag.endpoint)?.docs.committed;
        const next = live === undefined ? doc : keepSavedEntries(endpoint.docs.committed, doc, flags, live, this.schema);
        endpoint.docs.reset(deepFreeze(next));
      }
      return [...files.keys()];
    }
    throw new ReloadError("the device kept writing while the state folder was read; try again");
  }

  /** Names of endpoints open to anyone, and of endpoints still using a factory key. */
  provisioningReport(): { open: string[]; factoryKeys: string[] } {
    const factoryRing = buildKeyring(this.factory.get(APIKEYS_ENDPOINT));
    const open: string[] = [];
    const factoryKeys: string[] = [];
    // A sealed device's keys are compared as sealed records (docs/api.md §9).
    const sealed = isSealedDoc(this.endpoints.get(APIKEYS_ENDPOINT)?.docs.committed);
    const stored = (key: string): string => (sealed ? sealKey(key, this.fingerprintSecret) : key);
    for (const [name, pair] of this.keyring) {
      if (!this.endpoints.has(name)) continue;
      if (pair.rd === "" || pair.wr === "") open.push(name);
      const original = factoryRing.get(name);
      if (original !== undefined && ((pair.rd !== "" && pair.rd === stored(original.rd)) || (pair.wr !== "" && pair.wr === stored(original.wr)))) {
        factoryKeys.push(name);
      }
    }
    return { open, factoryKeys };
  }
}
