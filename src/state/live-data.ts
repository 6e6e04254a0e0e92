/**
 * Live documents (docs/api.md §6, `data`): held in memory, starting from the factory values at every
 * start, except the entries whose flag in a sibling document (`process` entry *i*, `save`) is true:
 * their written members and time stamp are kept.
 */

import { cloneJson, TYPE_NAME, type Json } from "./documents.ts";
import { isObject, type LiveRule, type Schema } from "./schema.ts";

/**
 * The factory document with every saved entry taken from `source`: what a live document is on
 * disk (source = the current document) and at start (source = the state file). The root's stamp
 * member (its `time`) is the latest of the factory's and the saved entries'.
 */
export function keepSavedEntries(
  factory: Json,
  source: Json,
  flags: Json | undefined,
  rule: LiveRule,
  schema: Schema,
): Json {
  const result = cloneJson(factory);
  if (!isObject(result) || !isObject(source) || !isObject(flags)) return result;
  const entries = result["entries"];
  const sourceEntries = source["entries"];
  const flagEntries = flags["entries"];
  if (!Array.isArray(entries) || !Array.isArray(sourceEntries) || !Array.isArray(flagEntries)) return result;
  entries.forEach((entry, i) => {
    const flagHolder = flagEntries[i];
    const saved = sourceEntries[i];
    if (!isObject(flagHolder) || flagHolder[rule.saveFlag.member] !== true) return;
    if (!isObject(entry) || !isObject(saved) || saved[TYPE_NAME] !== entry[TYPE_NAME]) return;
    // What is saved is the written value and its time stamp; the rest (a point's `error`) is live
    // state, kept at the factory's value on disk and at start.
    const typeName = entry[TYPE_NAME];
    const typeRule = typeof typeName === "string" ? schema.types.get(typeName) : undefined;
    const stamp = typeRule?.stamp;
    const kept: Record<string, Json> = { ...entry };
    for (const member of Object.keys(entry)) {
      if ((typeRule?.writable.has(member) === true || member === stamp) && saved[member] !== undefined) kept[member] = saved[member] as Json;
    }
    entries[i] = kept;
    if (stamp === undefined) return;
    const root = result as Record<string, Json>;
    const savedTime = saved[stamp];
    const rootTime = root[stamp];
    if (typeof savedTime === "number" && typeof rootTime === "number" && savedTime > rootTime) root[stamp] = savedTime;
  });
  return result;
}

/**
 * A flags document in which entry *i*'s flag is true when it is true in any of `docs`: the save
 * flags both as committed and as about to be committed, so that a flag being turned on saves its
 * output before that change is answered, and one being turned off drops nothing until it is durable.
 */
export function eitherFlag(rule: LiveRule, docs: ReadonlyArray<Json | undefined>): Json {
  const member = rule.saveFlag.member;
  const entries: Json[] = [];
  for (const doc of docs) {
    if (!isObject(doc) || !Array.isArray(doc["entries"])) continue;
    doc["entries"].forEach((entry, i) => {
      if (isObject(entry) && entry[member] === true) entries[i] = { [member]: true };
    });
  }
  return { entries: Array.from(entries, (e) => e ?? {}) };
}
