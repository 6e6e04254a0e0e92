/**
 * The device: its endpoints, loaded and validated once at start-up from the config folder (factory
 * defaults, never written) and the state folder (the live documents), then served from memory.
 */

import { chmod, mkdir, readdir, readFile, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { buildKeyring, keyringProblems, type Keyring } from "../access/keys.ts";
import { deepFreeze, rootProblem, shapeProblems, upgradeRevisions, type Json } from "./documents.ts";
import { jsonFaultPosition } from "../common/json-position.ts";
import { eitherFlag, keepSavedEntries } from "./live-data.ts";
import { buildSchema, isObject, type LiveRule, type Schema } from "./schema.ts";
import { CommitQueue, isTempFileName, NODE_FS, syncFolder, writeFileDurably, type StoreFs } from "./store.ts";

/** The endpoint that is always open and read-only (docs/api.md §3). */
export const DEVICE_ENDPOINT = "device";
/** The endpoint that holds the key pairs. */
export const APIKEYS_ENDPOINT = "apikeys";

/** A file of the config or state folder that holds an endpoint's document; group 1 is its name. */
export const ENDPOINT_FILE = /^([A-Za-z0-9_-][A-Za-z0-9_.-]*)\.json$/;

/** One endpoint being served. */
export interface Endpoint {
  readonly name: string;
  /** `device`: no key, no PUT. */
  readonly readOnly: boolean;
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

/** Where the device lives on disk, and how to report what is worth a warning. */
export interface LoadOptions {
  readonly configDir: string;
  readonly stateDir: string;
  readonly fs?: StoreFs;
  readonly warn?: (message: string) => void;
}

/** The loaded device. The keyring always reflects the committed `apikeys` document. */
export class Device {
  keyring: Keyring = new Map();
  readonly endpoints = new Map<string, Endpoint>();

  /** Where loadDevice read the state from, and how each endpoint's document is written there. */
  source: { readonly stateDir: string; readonly persist: Map<string, (doc: Json) => string> } | undefined;
  /** File writes under way (commits, and the rewrites that follow a failed one). */
  writesInFlight = 0;

  constructor(
    readonly schema: Schema,
    readonly factory: ReadonlyMap<string, Json>,
  ) {}

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
    const source = this.source;
    if (source === undefined) throw new ReloadError("this device was not loaded from a state folder");
    for (let attempt = 0; attempt < RELOAD_ATTEMPTS; attempt++) {
      await this.idle();
      const before = new Map([...this.endpoints].map(([name, e]) => [name, e.docs.committed]));
      const files = new Map<string, Json>();
      const problems: string[] = [];
      for (const name of this.endpoints.keys()) {
        if (name === DEVICE_ENDPOINT) continue; // served from the installed config, as at start
        const file = await readStateFile(source.stateDir, name, this.factory.get(name) as Json, this.schema);
        if (file.status === "missing") problems.push(`${join(source.stateDir, name + ".json")}: missing (a restart seeds it from the factory default)`);
        else if (file.status === "invalid") problems.push(...file.problems);
        else if (file.text !== source.persist.get(name)?.(before.get(name) as Json)) files.set(name, file.doc);
      }
      if (problems.length > 0) throw new ReloadError(problems.join("\n"));
      // From here on nothing awaits, so no request runs in between. A write that committed or is
      // under way while the files were read may not be in what was read: read again.
      const busy = this.writesInFlight > 0 || [...this.endpoints].some(([name, e]) => e.docs.committed !== before.get(name) || e.docs.latest !== e.docs.committed);
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
    for (const [name, pair] of this.keyring) {
      if (!this.endpoints.has(name)) continue;
      if (pair.rd === "" || pair.wr === "") open.push(name);
      const original = factoryRing.get(name);
      if (original !== undefined && ((pair.rd !== "" && pair.rd === original.rd) || (pair.wr !== "" && pair.wr === original.wr))) {
        factoryKeys.push(name);
      }
    }
    return { open, factoryKeys };
  }
}

async function readJson(path: string): Promise<unknown> {
  const text = await readFile(path, "utf8");
  try {
    return JSON.parse(text);
  } catch {
    // Only the position: V8's message may quote the text around it, and this file may hold keys.
    throw new StartupError(`${path}: not valid JSON (${jsonFaultPosition(text)})`);
  }
}

/** Serialized form of a state file: indented for the technician who opens it, newline-terminated. */
export function fileText(doc: unknown): string {
  return JSON.stringify(doc, null, 2) + "\n";
}

/** Reads the schema files of `<configDir>/schema/` (optional folder). */
async function loadSchema(configDir: string): Promise<Schema> {
  const dir = join(configDir, "schema");
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(".json")).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return buildSchema([]);
    throw new StartupError(`${dir}: cannot be read (${(error as NodeJS.ErrnoException).code})`);
  }
  const files = [];
  for (const name of names) files.push({ file: join(dir, name), content: await readJson(join(dir, name)) });
  try {
    return buildSchema(files);
  } catch (error) {
    throw new StartupError((error as Error).message);
  }
}

/** Reads and checks the config folder: the factory documents and their rules. */
export async function loadFactory(configDir: string): Promise<{ schema: Schema; factory: Map<string, Json> }> {
  const schema = await loadSchema(configDir);
  let entries: string[];
  try {
    entries = (await readdir(configDir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
  } catch (error) {
    throw new StartupError(`config folder ${configDir}: cannot be read (${(error as NodeJS.ErrnoException).code})`);
  }
  const factory = new Map<string, Json>();
  const problems: string[] = [];
  // Every file is read at once (their thread-pool round trips overlap: start-up time) and checked in order below.
  const endpointFiles = entries.filter((file) => file.endsWith(".json") && !file.startsWith(".") && ENDPOINT_FILE.test(file));
  const reading = new Map(endpointFiles.map((file) => [file, readJson(join(configDir, file))]));
  for (const pending of reading.values()) pending.catch(() => undefined); // awaited below; not "unhandled" meanwhile
  for (const file of entries) {
    if (!file.endsWith(".json") || file.startsWith(".")) continue;
    const match = ENDPOINT_FILE.exec(file);
    const path = join(configDir, file);
    if (match === null) {
      problems.push(`${path}: an endpoint name may hold only letters, digits, "_", "-" and "."`);
      continue;
    }
    let doc: unknown;
    try {
      doc = await reading.get(file);
    } catch (error) {
      problems.push(error instanceof StartupError ? error.message : `${path}: cannot be read`);
      continue;
    }
    for (const p of shapeProblems(doc, schema)) problems.push(`${path}: ${p}`);
    factory.set(match[1] as string, deepFreeze(doc as Json));
  }
  const apikeys = factory.get(APIKEYS_ENDPOINT);
  if (apikeys === undefined) {
    problems.push(`${join(configDir, "apikeys.json")}: missing; every device needs its key pairs`);
  } else {
    for (const p of keyringProblems(apikeys)) problems.push(`${join(configDir, "apikeys.json")}: ${p}`);
    const ring = buildKeyring(apikeys);
    for (const name of factory.keys()) {
      if (name !== DEVICE_ENDPOINT && !ring.has(name)) {
        problems.push(`${join(configDir, name + ".json")}: endpoint "${name}" has no key pair in apikeys.json`);
      }
    }
  }
  for (const [endpoint, rule] of schema.live) {
    if (!factory.has(endpoint)) continue;
    if (!factory.has(rule.saveFlag.endpoint)) {
      problems.push(`schema: live endpoint "${endpoint}" takes its save flags from "${rule.saveFlag.endpoint}", which does not exist`);
    }
  }
  if (problems.length > 0) throw new StartupError(problems.join("\n"));
  return { schema, factory };
}

/** One state file, read and checked as a start would: absent, broken (with every problem), or its document. */
export type StateFile =
  | { readonly status: "missing" }
  | { readonly status: "invalid"; readonly problems: readonly string[] }
  | { readonly status: "ok"; readonly doc: Json; readonly text: string; readonly addedPairs: boolean; readonly upgraded: boolean };

/**
 * Reads `<stateDir>/<name>.json` and checks it: valid JSON, the shape rules, and for `apikeys` the
 * keyring, with the factory pairs it lacks added (`addedPairs`). Reads only; never writes.
 */
export async function readStateFile(stateDir: string, name: string, factoryDoc: Json, schema: Schema): Promise<StateFile> {
  const path = join(stateDir, `${name}.json`);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? { status: "missing" } : { status: "invalid", problems: [`${path}: cannot be read (${code})`] };
  }
  let doc: Json;
  try {
    doc = JSON.parse(text) as Json;
  } catch {
    return { status: "invalid", problems: [`${path}: not valid JSON (a damaged state file; see "Recovery" in the README)`] };
  }
  const root = rootProblem(doc, factoryDoc);
  if (root !== undefined) return { status: "invalid", problems: [`${path}: ${root}`] };
  const read = doc;
  doc = upgradeRevisions(doc, factoryDoc);
  const problems = shapeProblems(doc, schema).map((p) => `${path}: ${p}`);
  if (name === APIKEYS_ENDPOINT) problems.push(...keyringProblems(doc).map((p) => `${path}: ${p}`));
  if (problems.length > 0) return { status: "invalid", problems };
  const merged = name === APIKEYS_ENDPOINT ? withMissingPairs(doc, factoryDoc) : doc;
  return { status: "ok", doc: merged, text, addedPairs: merged !== doc, upgraded: doc !== read };
}

/** Pairs of the factory `apikeys` that the state lacks (an update added an endpoint) are appended. */
function withMissingPairs(state: Json, factory: Json): Json {
  if (!isObject(state) || !isObject(factory) || !Array.isArray(state["keys"]) || !Array.isArray(factory["keys"])) return state;
  const have = new Set(state["keys"].map((p) => (isObject(p) ? p["name"] : undefined)));
  const missing = factory["keys"].filter((p) => isObject(p) && !have.has(p["name"]));
  if (missing.length === 0) return state;
  return { ...state, keys: [...state["keys"], ...missing] } as Json;
}

/**
 * Loads the device: checks the config folder, creates and seeds the state folder, reads and checks
 * every state file. Throws StartupError naming the file on any problem; never replaces a state
 * file that exists with a factory one.
 */
export async function loadDevice(options: LoadOptions): Promise<Device> {
  const fs = options.fs ?? NODE_FS;
  const warn = options.warn ?? (() => undefined);
  const { schema, factory } = await loadFactory(options.configDir);
  const stateDir = options.stateDir;
  try {
    // A folder made now is flushed into its parent, or a power cut could lose it with every file in it.
    const created = await mkdir(stateDir, { recursive: true, mode: 0o700 });
    if (created !== undefined) await syncFolder(fs, dirname(created));
  } catch (error) {
    throw new StartupError(`state folder ${stateDir}: cannot be created (${(error as NodeJS.ErrnoException).code})`);
  }
  let present: string[];
  try {
    present = await readdir(stateDir);
  } catch (error) {
    throw new StartupError(`state folder ${stateDir}: cannot be read (${(error as NodeJS.ErrnoException).code})`);
  }
  for (const name of present) {
    // Left by a write that a crash interrupted; the real file is intact beside it.
    if (isTempFileName(name)) await unlink(join(stateDir, name)).catch(() => undefined);
  }
  for (const name of present) {
    const match = ENDPOINT_FILE.exec(name);
    if (match !== null && !factory.has(match[1] as string)) {
      warn(`state file ${join(stateDir, name)} belongs to no configured endpoint; left alone`);
    } else if (match !== null) {
      // State files are for their owner only (docs/api.md §6): the key file above all.
      const path = join(stateDir, name);
      const mode = (await stat(path).catch(() => undefined))?.mode;
      if (mode !== undefined && (mode & 0o077) !== 0) {
        await chmod(path, 0o600);
        warn(`${path} was readable by others (mode ${(mode & 0o777).toString(8)}); set to 600`);
      }
    }
  }

  const stored = new Map<string, Json>();
  const problems: string[] = [];
  // A first start seeds every file: the seeds are written side by side, so that their flushes
  // overlap (a first start listened about 5 ms sooner on the bench machine), and are settled
  // before any other write and before the verdict.
  const seeding: { name: string; path: string; failure: Promise<unknown> }[] = [];
  const settleSeeds = async (): Promise<void> => {
    for (const seed of seeding.splice(0)) {
      const failure = await seed.failure;
      if (failure === undefined) continue;
      problems.push(`${seed.path}: cannot be seeded (${(failure as NodeJS.ErrnoException).code ?? "error"})`);
      stored.delete(seed.name);
    }
  };
  // As with the config: every state file is read at once, and checked in order.
  const reading = new Map([...factory].map(([name, factoryDoc]) => [name, readStateFile(stateDir, name, factoryDoc, schema)]));
  for (const pending of reading.values()) pending.catch(() => undefined); // awaited below; not "unhandled" meanwhile
  for (const [name, factoryDoc] of factory) {
    const path = join(stateDir, `${name}.json`);
    const file = await (reading.get(name) as Promise<StateFile>);
    if (file.status === "missing") {
      const failure = writeFileDurably(fs, stateDir, `${name}.json`, fileText(factoryDoc)).then(
        () => undefined,
        (writeError: unknown) => writeError ?? new Error("seeding failed"),
      );
      seeding.push({ name, path, failure });
      stored.set(name, factoryDoc);
      continue;
    }
    if (file.status === "invalid") {
      problems.push(...file.problems);
      continue;
    }
    await settleSeeds();
    if (name === DEVICE_ENDPOINT) {
      // Read-only hardware identity: what the installed config says wins (an update may correct it).
      if (file.text !== fileText(factoryDoc) && problems.length === 0) await writeFileDurably(fs, stateDir, `${name}.json`, fileText(factoryDoc));
      stored.set(name, factoryDoc);
      continue;
    }
    if ((file.addedPairs || file.upgraded) && problems.length === 0) {
      await writeFileDurably(fs, stateDir, `${name}.json`, fileText(file.doc));
      if (file.addedPairs) warn(`added the key pairs of new endpoints to ${path}`);
      if (file.upgraded) warn(`brought ${path} up to the configured type revisions (new members take their factory values)`);
    }
    stored.set(name, file.doc);
  }
  await settleSeeds();
  if (problems.length > 0) throw new StartupError(problems.join("\n"));

  const device = new Device(schema, factory);
  const persistOf = new Map<string, (doc: Json) => string>();
  device.source = { stateDir, persist: persistOf };
  const flagsOf = (rule: LiveRule): Json => {
    const source = device.endpoints.get(rule.saveFlag.endpoint)?.docs;
    return eitherFlag(rule, source === undefined ? [stored.get(rule.saveFlag.endpoint)] : [source.committed, source.latest]);
  };
  // Endpoints whose documents hold the save flags of a live one: their writes also save its outputs.
  const liveByFlagSource = new Map<string, string[]>();
  for (const [liveName, rule] of schema.live) {
    if (stored.has(liveName)) liveByFlagSource.set(rule.saveFlag.endpoint, [...(liveByFlagSource.get(rule.saveFlag.endpoint) ?? []), liveName]);
  }
  for (const [name, storedDoc] of stored) {
    const live = schema.live.get(name);
    const factoryDoc = factory.get(name) as Json;
    const initial = live === undefined ? storedDoc : keepSavedEntries(factoryDoc, storedDoc, flagsOf(live), live, schema);
    const persist =
      live === undefined
        ? fileText
        : (doc: Json) => fileText(keepSavedEntries(factoryDoc, doc, flagsOf(live), live, schema));
    const answers = new Map<string, Buffer>();
    const onCommit = (doc: Json): void => {
      answers.clear();
      if (name === APIKEYS_ENDPOINT) device.keyring = buildKeyring(doc);
    };
    persistOf.set(name, persist);
    const write = async (text: string): Promise<void> => {
      device.writesInFlight++;
      try {
        await writeFileDurably(fs, stateDir, `${name}.json`, text);
        // A save flag this change turns on: the output's value is on disk before the change is
        // answered (docs/api.md §6). Through the live document's own queue, so its writes stay in order.
        for (const liveName of liveByFlagSource.get(name) ?? []) {
          const liveDocs = device.endpoints.get(liveName)?.docs;
          if (liveDocs !== undefined) await liveDocs.change(liveDocs.latest);
        }
      } finally {
        device.writesInFlight--;
      }
    };
    const docs = new CommitQueue<Json>(deepFreeze(initial), persist, write, onCommit);
    device.endpoints.set(name, { name, readOnly: name === DEVICE_ENDPOINT, docs, answers });
    onCommit(initial);
  }
  return device;
}
