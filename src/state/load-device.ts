/**
 * Loading the device at start-up, in three steps: the state folder made ready (created, trusted,
 * repaired), every state file read and checked (or seeded from its factory default), the secret
 * of the log's key fingerprints read (or made), then the endpoints wired to their files. Any problem is a StartupError naming the file; a state file that
 * exists is never replaced with a factory one.
 */

import { join } from "node:path";
import { FingerprintSecretError, loadFingerprintSecret } from "../access/fingerprint-secret.ts";
import { entryMatches, readPreviousKeysFile, type PreviousEntry } from "../access/key-deadlines.ts";
import { isSealedDoc, sealDocument } from "../access/keys.ts";
import { loadFactory } from "./config-folder.ts";
import { APIKEYS_ENDPOINT, DEVICE_ENDPOINT, Device, StartupError } from "./device.ts";
import type { Json } from "./documents.ts";
import { isObject, type Schema } from "./schema.ts";
import { fileText, readStateFile, type StateFile } from "./state-file.ts";
import { prepareStateFolder } from "./state-folder.ts";
import { NODE_FS, writeFileDurably, type StoreFs } from "./store.ts";

/** Where the device lives on disk, and how to report what is worth a warning. */
export interface LoadOptions {
  readonly configDir: string;
  readonly stateDir: string;
  readonly fs?: StoreFs;
  readonly warn?: (message: string) => void;
}

/** Loads the device from its config and state folders. */
export async function loadDevice(options: LoadOptions): Promise<Device> {
  const fs = options.fs ?? NODE_FS;
  const warn = options.warn ?? (() => undefined);
  const { schema, factory } = await loadFactory(options.configDir);
  await prepareStateFolder(options.stateDir, new Set(factory.keys()), fs, warn);
  const secret = await loadFingerprintSecret(options.stateDir, { create: true, warn }).catch((error: unknown) => {
    throw error instanceof FingerprintSecretError ? new StartupError(error.message) : error;
  });
  const stored = await readAndSeed(options.stateDir, factory, schema, fs, warn, secret);
  const { entries: previous, sealed } = await readPreviousKeysFile(options.stateDir, warn);
  if (sealed) await finishSealing(options.stateDir, stored, previous, secret, fs, warn);
  return new Device(schema, factory, options.stateDir, stored, fs, secret, previous);
}

/**
 * Sealing writes previous.keys (marked sealed) before apikeys.json (docs/api.md §9). A marked file
 * beside an `apikeys.json` that is not sealed, holding an entry for the sealed keys of that very
 * document, is a sealing a crash interrupted: it is finished here, durably, before anything is
 * served, so the grace keys of that file stay usable and no key stays in clear.
 */
async function finishSealing(stateDir: string, stored: Map<string, Json>, previous: ReadonlyMap<string, PreviousEntry>, secret: Buffer, fs: StoreFs, warn: (message: string) => void): Promise<void> {
  const doc = stored.get(APIKEYS_ENDPOINT);
  if (doc === undefined || isSealedDoc(doc)) return;
  const sealedDoc = sealDocument(doc, secret);
  const pairs = isObject(sealedDoc) && Array.isArray(sealedDoc["keys"]) ? (sealedDoc["keys"] as Json[]) : [];
  const ours = pairs.some((p) => isObject(p) && entryMatches(secret, previous.get(String(p["name"])), p));
  if (!ours) return;
  await writeFileDurably(fs, stateDir, `${APIKEYS_ENDPOINT}.json`, fileText(sealedDoc));
  stored.set(APIKEYS_ENDPOINT, sealedDoc);
  warn(`finished sealing ${join(stateDir, APIKEYS_ENDPOINT + ".json")}: an earlier sealing was interrupted after previous.keys was sealed`);
}

/**
 * Reads every state file and checks it; a missing one is seeded from its factory default, one of
 * an older revision or lacking new pairs is brought up to date. Returns the documents to serve.
 */
async function readAndSeed(
  stateDir: string,
  factory: ReadonlyMap<string, Json>,
  schema: Schema,
  fs: StoreFs,
  warn: (message: string) => void,
  secret: Buffer,
): Promise<Map<string, Json>> {
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
  for (const [name, factoryDoc] of factory) {
    const path = join(stateDir, `${name}.json`);
    // Read in place (state-file.ts: synchronous, a tenth of a thread-pool round trip).
    const file: StateFile = await readStateFile(stateDir, name, factoryDoc, schema);
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
    // The pairs of new endpoints come with their factory keys in clear: a sealed device keeps them
    // as digests like every other key (docs/api.md §9), before they reach the disk or an answer.
    const doc = file.addedPairs && name === APIKEYS_ENDPOINT && isSealedDoc(file.doc) ? sealDocument(file.doc, secret) : file.doc;
    if ((file.addedPairs || file.upgraded) && problems.length === 0) {
      await writeFileDurably(fs, stateDir, `${name}.json`, fileText(doc));
      if (file.addedPairs) warn(`added the key pairs of new endpoints to ${path}`);
      if (file.upgraded) warn(`brought ${path} up to the configured type revisions (new members take their factory values)`);
    }
    stored.set(name, doc);
  }
  await settleSeeds();
  if (problems.length > 0) throw new StartupError(problems.join("\n"));
  return stored;
}
