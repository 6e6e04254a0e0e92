/** Paths into JSON documents (docs/api.md §2) and the shape every document must have (docs/api.md §1). */

import { isObject, isValidValue, type Schema } from "./schema.ts";

/** A JSON value as parsed from a file or a body. */
export type Json = null | boolean | number | string | Json[] | { [member: string]: Json };

export const TYPE_NAME = "Json+typeName";
export const TYPE_REVISION = "Json+typeRevision";

const INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * Splits a raw sub-path ("entries/0/name") into percent-decoded segments. A raw `+` stays `+`.
 * Returns null for a malformed path: bad percent-encoding or an empty segment.
 */
export function decodeSegments(raw: string): string[] | null {
  if (raw === "") return [];
  const parts = raw.split("/");
  const segments: string[] = [];
  for (const part of parts) {
    if (part === "") return null;
    if (part.indexOf("%") === -1) {
      segments.push(part);
      continue;
    }
    try {
      segments.push(decodeURIComponent(part));
    } catch {
      return null;
    }
  }
  return segments;
}

/** Whether `holder[segment]` exists, by the API reference's rules: member names for objects, canonical indexes for arrays. */
function child(holder: unknown, segment: string): { value: unknown } | undefined {
  if (Array.isArray(holder)) {
    if (!INDEX.test(segment)) return undefined;
    const i = Number(segment);
    return i < holder.length ? { value: holder[i] } : undefined;
  }
  if (isObject(holder) && Object.prototype.hasOwnProperty.call(holder, segment)) return { value: holder[segment] };
  return undefined;
}

/** What a path selects: the value, and the object or array holding it (undefined for the root). */
export interface Selection {
  readonly value: unknown;
  readonly parent: unknown;
  readonly key: string | undefined;
}

/** Follows the segments into the document; undefined when the path does not exist. */
export function select(doc: unknown, segments: readonly string[]): Selection | undefined {
  let parent: unknown = undefined;
  let value: unknown = doc;
  let key: string | undefined;
  for (const segment of segments) {
    const next = child(value, segment);
    if (next === undefined) return undefined;
    parent = value;
    value = next.value;
    key = segment;
  }
  return { value, parent, key };
}

/**
 * Checks docs/api.md §1's shape and §4's kinds over a whole document: every object ends with
 * `Json+typeName` (string) then `Json+typeRevision` (integer), and every writable member the schema
 * declares for its type is present with a valid value. Returns the problems, empty when none.
 */
export function shapeProblems(doc: unknown, schema: Schema): string[] {
  const problems: string[] = [];
  const visit = (value: unknown, path: string): void => {
    if (Array.isArray(value)) {
      value.forEach((item, i) => visit(item, `${path}/${i}`));
      return;
    }
    if (!isObject(value)) return;
    const where = path === "" ? "/" : path;
    const members = Object.keys(value);
    const n = members.length;
    if (n < 2 || members[n - 2] !== TYPE_NAME || members[n - 1] !== TYPE_REVISION) {
      problems.push(`${where}: the last two members must be "${TYPE_NAME}" then "${TYPE_REVISION}"`);
      return;
    }
    const typeName = value[TYPE_NAME];
    const revision = value[TYPE_REVISION];
    if (typeof typeName !== "string" || typeName === "") problems.push(`${where}: "${TYPE_NAME}" must be a string`);
    if (!Number.isSafeInteger(revision) || (revision as number) < 0) {
      problems.push(`${where}: "${TYPE_REVISION}" must be a non-negative integer`);
    }
    const rule = typeof typeName === "string" ? schema.types.get(typeName) : undefined;
    if (rule !== undefined) {
      for (const [member, memberRule] of rule.writable) {
        if (!Object.prototype.hasOwnProperty.call(value, member)) {
          problems.push(`${where}: ${typeName} lacks its member "${member}"`);
        } else if (!isValidValue(memberRule, value[member])) {
          problems.push(`${where}/${member}: not a valid ${memberRule.kind}`);
        }
      }
      if (rule.stamp !== undefined && !Number.isSafeInteger(value[rule.stamp])) {
        problems.push(`${where}/${rule.stamp}: must be an integer (Unix seconds)`);
      }
    }
    for (const member of members) visit(value[member], `${path}/${member}`);
  };
  visit(doc, "");
  return problems;
}

/**
 * What keeps a state document from standing for its factory default: a root of another kind
 * (object, array, plain value) or an object of another type. shapeProblems alone cannot tell, since
 * `null` or `[]` hold no object to check. Undefined when none.
 */
export function rootProblem(doc: unknown, factory: unknown): string | undefined {
  const kind = (v: unknown): string => (Array.isArray(v) ? "an array" : isObject(v) ? "an object" : "a plain value");
  if (kind(doc) !== kind(factory)) return `must be ${kind(factory)}, like its factory default`;
  if (isObject(doc) && isObject(factory) && doc[TYPE_NAME] !== factory[TYPE_NAME]) {
    return `must be a ${String(factory[TYPE_NAME])} document, like its factory default`;
  }
  return undefined;
}

/**
 * Brings a state document up to the factory's type revisions (docs/api.md §1: a newer revision may only
 * add members). Objects are paired by path; where both have the same type and the factory's
 * revision is higher, the members the state lacks are added with their factory values (before the
 * type tags) and the revision is raised. Returns `state` itself when nothing needed it.
 */
export function upgradeRevisions(state: Json, factory: Json): Json {
  if (Array.isArray(state) && Array.isArray(factory)) {
    let changed = false;
    const items = state.map((item, i) => {
      const paired = i < factory.length ? (factory[i] as Json) : undefined;
      const next = paired === undefined ? item : upgradeRevisions(item, paired);
      changed ||= next !== item;
      return next;
    });
    return changed ? items : state;
  }
  if (!isObject(state) || !isObject(factory)) return state;
  let changed = false;
  const members: Record<string, Json> = {};
  for (const [name, value] of Object.entries(state)) {
    const paired = factory[name];
    const next = paired === undefined || name === TYPE_NAME || name === TYPE_REVISION ? value : upgradeRevisions(value, paired);
    changed ||= next !== value;
    members[name] = next;
  }
  const sameType = state[TYPE_NAME] === factory[TYPE_NAME];
  const older = typeof state[TYPE_REVISION] === "number" && typeof factory[TYPE_REVISION] === "number" && state[TYPE_REVISION] < factory[TYPE_REVISION];
  if (sameType && older) {
    for (const [name, value] of Object.entries(factory)) {
      if (!(name in members)) members[name] = cloneJson(value);
    }
    const { [TYPE_NAME]: typeName, [TYPE_REVISION]: _old, ...rest } = members;
    void _old;
    return { ...rest, [TYPE_NAME]: typeName as Json, [TYPE_REVISION]: factory[TYPE_REVISION] as Json };
  }
  return changed ? members : state;
}

/** A deep copy of a JSON document (the staging copy of a write). */
export function cloneJson<T>(doc: T): T {
  return JSON.parse(JSON.stringify(doc)) as T;
}

/** Deep-freezes a document so that nothing can change it outside a staged write. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
