/** The write rules of docs/api.md §4: a PUT is checked whole, then applied to a copy of the document. */

import type { Fields } from "../http/body.ts";
import { cloneJson, select, TYPE_NAME, TYPE_REVISION, type Json } from "./documents.ts";
import { ApiError, ERRORS } from "../http/errors.ts";
import { convertJson, convertText, INVALID, isObject, type MemberRule, type Schema } from "./schema.ts";

/**
 * Builds the document that a PUT of `fields` at `segments` makes of `doc`, or throws the first
 * error in docs/api.md §5's order: path not found (1), then unknown (7), read-only (6), invalid (8).
 * `doc` is not touched; the result is a new document.
 */
export function applyWrite(doc: Json, segments: readonly string[], fields: Fields, schema: Schema, nowSeconds: number): Json {
  const selection = select(doc, segments);
  if (selection === undefined) throw new ApiError(ERRORS.PATH_NOT_FOUND);

  let target: Record<string, unknown>;
  let targetSegments: readonly string[];
  if (Array.isArray(selection.value)) throw new ApiError(ERRORS.READ_ONLY);
  if (isObject(selection.value)) {
    target = selection.value;
    targetSegments = segments;
  } else {
    // A leaf: the body names that leaf and nothing else; the write is one on its holder.
    if (!isObject(selection.parent)) throw new ApiError(ERRORS.READ_ONLY);
    if (fields.values.size !== 1 || !fields.values.has(selection.key as string)) throw new ApiError(ERRORS.BAD_REQUEST);
    target = selection.parent;
    targetSegments = segments.slice(0, -1);
  }

  const typeName = target[TYPE_NAME];
  const rule = typeof typeName === "string" ? schema.types.get(typeName) : undefined;
  const names = [...fields.values.keys()];
  if (names.some((name) => !Object.prototype.hasOwnProperty.call(target, name))) {
    throw new ApiError(ERRORS.UNKNOWN_MEMBER);
  }
  const rules: MemberRule[] = [];
  for (const name of names) {
    const memberRule = name === TYPE_NAME || name === TYPE_REVISION ? undefined : rule?.writable.get(name);
    if (memberRule === undefined) throw new ApiError(ERRORS.READ_ONLY);
    rules.push(memberRule);
  }
  const converted = names.map((name, i) => {
    const raw = fields.values.get(name);
    const memberRule = rules[i] as MemberRule;
    const value = fields.format === "form" ? convertText(memberRule, raw as string) : convertJson(memberRule, raw);
    if (value === INVALID) throw new ApiError(ERRORS.INVALID_VALUE);
    return value as Json;
  });

  const next = cloneJson(doc);
  const nextTarget = select(next, targetSegments)?.value as Record<string, Json>;
  names.forEach((name, i) => {
    nextTarget[name] = converted[i] as Json;
  });
  if (rule?.stamp !== undefined) {
    nextTarget[rule.stamp] = nowSeconds;
    if (isObject(next) && typeof next[rule.stamp] === "number") next[rule.stamp] = nowSeconds;
  }
  return next;
}
