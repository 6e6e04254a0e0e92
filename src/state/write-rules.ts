/** The write rules of docs/api.md §4: a PUT is checked whole, then applied to a copy of the document. */

import type { Fields } from "../http/body.ts";
import { cloneJson, select, TYPE_NAME, TYPE_REVISION, type Json } from "./documents.ts";
import { ApiError, ERRORS } from "../http/errors.ts";
import { convertJson, convertText, describeRule, INVALID, isObject, type MemberRule, type Schema, type TypeRule } from "./schema.ts";

/**
 * Builds the document that a PUT of `fields` at `segments` of `endpoint` makes of `doc`, or throws the first
 * error in docs/api.md §5's order: path not found (1), then unknown (7), read-only (6), invalid (8).
 * `doc` is not touched; the result is a new document.
 */
export function applyWrite(endpoint: string, doc: Json, segments: readonly string[], fields: Fields, schema: Schema, nowSeconds: number): Json {
  const selection = select(doc, segments);
  if (selection === undefined) throw new ApiError(ERRORS.PATH_NOT_FOUND, NO_SUCH_PATH);

  let target: Record<string, unknown>;
  let targetSegments: readonly string[];
  if (Array.isArray(selection.value)) throw new ApiError(ERRORS.READ_ONLY, "an array is not written whole: PUT one of its entries, at its index (.../0)");
  if (isObject(selection.value)) {
    target = selection.value;
    targetSegments = segments;
  } else {
    // A leaf: the body names that leaf and nothing else; the write is one on its holder.
    if (!isObject(selection.parent)) throw new ApiError(ERRORS.READ_ONLY, "an array entry that is a plain value is not writable");
    if (fields.values.size !== 1 || !fields.values.has(selection.key as string)) {
      throw new ApiError(ERRORS.BAD_REQUEST, `a PUT on a member takes a body naming that member and nothing else (${selection.key as string}=...)`);
    }
    target = selection.parent;
    targetSegments = segments.slice(0, -1);
  }

  const typeName = target[TYPE_NAME];
  const rule = typeof typeName === "string" ? schema.types.get(typeName) : undefined;
  const names = [...fields.values.keys()];
  if (names.some((name) => !Object.prototype.hasOwnProperty.call(target, name))) {
    // Never the name sent (it may be a key typed in the wrong place): what the object does take.
    throw new ApiError(ERRORS.UNKNOWN_MEMBER, `a member named in the body is not a member of this object; its writable members are: ${writableList(rule)}`);
  }
  const rules: MemberRule[] = [];
  for (const name of names) {
    const memberRule = name === TYPE_NAME || name === TYPE_REVISION ? undefined : rule?.writable.get(name);
    if (memberRule === undefined) throw new ApiError(ERRORS.READ_ONLY, readOnlyDetail(name, target[name], [endpoint, ...targetSegments], rule, schema));
    rules.push(memberRule);
  }
  const converted = names.map((name, i) => {
    const raw = fields.values.get(name);
    const memberRule = rules[i] as MemberRule;
    const value = fields.format === "form" ? convertText(memberRule, raw as string) : convertJson(memberRule, raw);
    if (value === INVALID) throw new ApiError(ERRORS.INVALID_VALUE, invalidDetail(name, memberRule, fields.format, raw));
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

/** The detail of error 1, shared by reads and writes. */
export const NO_SUCH_PATH = "this endpoint's document has no such path (member names are case-sensitive; indexes are plain decimals from 0)";

function writableList(rule: TypeRule | undefined): string {
  const names = [...(rule?.writable.keys() ?? [])];
  return names.length === 0 ? "none" : names.join(", ");
}

/**
 * Why a member that exists is not writable. An object or array (a container such as `mqtt`) is
 * written at its own path, with its own members: say where, and name one of them.
 */
function readOnlyDetail(name: string, value: unknown, at: readonly string[], rule: TypeRule | undefined, schema: Schema): string {
  if (!isObject(value) && !Array.isArray(value)) return `${name} is read-only; the writable members of this object are: ${writableList(rule)}`;
  const holder = Array.isArray(value) ? value[0] : value;
  const inner = isObject(holder) && typeof holder[TYPE_NAME] === "string" ? schema.types.get(holder[TYPE_NAME]) : undefined;
  const member = [...(inner?.writable.keys() ?? [])][0];
  const path = [...at, name, ...(Array.isArray(value) ? ["0"] : [])].map(encodeURIComponent).join("/");
  const example = member === undefined ? "" : ` with ${member}=...`;
  return `${name} is ${Array.isArray(value) ? "an array" : "an object"}: write its members at its own path, PUT /api/v1/${path}${example}`;
}

/** What a member takes; for JSON, also that the value must already be of that JSON type. */
function invalidDetail(name: string, rule: MemberRule, format: "form" | "json", raw: unknown): string {
  const takes = `${name} takes ${describeRule(rule)}`;
  if (format !== "json") return takes;
  const wanted = rule.kind === "boolean" ? "boolean" : rule.kind === "integer" || rule.kind === "port" || rule.kind === "number" ? "number" : "string";
  return typeof raw === wanted || (wanted === "boolean" && typeof raw === "number") ? takes : `${takes} (in JSON, a ${wanted}, not a ${raw === null ? "null" : Array.isArray(raw) ? "array" : typeof raw})`;
}
