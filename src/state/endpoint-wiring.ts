/**
 * Turns loaded documents into served endpoints: a commit queue per document that writes its state
 * file, and the live-data rule (docs/api.md §6) that a `data` file holds only the outputs whose
 * `save` flag is on, so that a change of a flag also saves (or stops saving) that output's value.
 */

import { DEVICE_ENDPOINT, type Endpoint } from "./device.ts";
import { deepFreeze, type Json } from "./documents.ts";
import { eitherFlag, keepSavedEntries } from "./live-data.ts";
import type { LiveRule, Schema } from "./schema.ts";
import { fileText } from "./state-file.ts";
import { CommitQueue, writeFileDurably, type StoreFs } from "./store.ts";

/** What the device learns from its endpoints' queues. */
export interface WiringHooks {
  /** A document was committed (and at start, its first one). */
  readonly committed: (endpoint: string, doc: Json) => void;
  /** A file write starts (+1) or ends (-1). */
  readonly writing: (delta: 1 | -1) => void;
}

/** The served endpoints, and the text each one's state file holds for a given document. */
export interface Wired {
  readonly endpoints: ReadonlyMap<string, Endpoint>;
  readonly persist: ReadonlyMap<string, (doc: Json) => string>;
}

/** Builds the endpoints of the loaded documents `stored`, written to `stateDir`. */
export function wireEndpoints(
  stored: ReadonlyMap<string, Json>,
  factory: ReadonlyMap<string, Json>,
  schema: Schema,
  stateDir: string,
  fs: StoreFs,
  hooks: WiringHooks,
): Wired {
  const endpoints = new Map<string, Endpoint>();
  const persistOf = new Map<string, (doc: Json) => string>();
  const flagsOf = (rule: LiveRule): Json => {
    const source = endpoints.get(rule.saveFlag.endpoint)?.docs;
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
    const persist = live === undefined ? fileText : (doc: Json) => fileText(keepSavedEntries(factoryDoc, doc, flagsOf(live), live, schema));
    const answers = new Map<string, Buffer>();
    const write = async (text: string): Promise<void> => {
      hooks.writing(1);
      try {
        await writeFileDurably(fs, stateDir, `${name}.json`, text);
        // A save flag this change turns on: the output's value is on disk before the change is
        // answered (docs/api.md §6). Through the live document's own queue, so its writes stay in order.
        for (const liveName of liveByFlagSource.get(name) ?? []) {
          const liveDocs = endpoints.get(liveName)?.docs;
          if (liveDocs !== undefined) await liveDocs.change(liveDocs.latest);
        }
      } finally {
        hooks.writing(-1);
      }
    };
    const onCommit = (doc: Json): void => {
      answers.clear();
      hooks.committed(name, doc);
    };
    const docs = new CommitQueue<Json>(deepFreeze(initial), persist, write, onCommit);
    // `device` is the hardware's identity: open to all and never written (docs/api.md §3).
    const isDevice = name === DEVICE_ENDPOINT;
    endpoints.set(name, { name, writable: !isDevice, keyed: !isDevice, docs, answers });
    persistOf.set(name, persist);
    onCommit(initial);
  }
  return { endpoints, persist: persistOf };
}
