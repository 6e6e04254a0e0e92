/**
 * Which members of which types are writable, and how their values convert and are checked (docs/api.md §4).
 * The rules are data (`device-config/schema/*.json`), so a vendor adds a type without touching code.
 */

import { isValidExpires } from "../access/expires.ts";
import { isValidOrigins } from "../access/origins.ts";

/** The kinds of value a writable member can hold. */
export type Kind = "string" | "integer" | "number" | "boolean" | "ipv4" | "port" | "key" | "label" | "expires" | "origins";

/** How one writable member converts and what values it accepts. */
export interface MemberRule {
  readonly kind: Kind;
  readonly min?: number;
  readonly max?: number;
  readonly maxLength?: number;
}

/** The rules of one `Json+typeName`. */
export interface TypeRule {
  /** Writable members; every other member of the type is read-only. */
  readonly writable: ReadonlyMap<string, MemberRule>;
  /** A member set to the current Unix time (on the object and on its document's root) by every write. */
  readonly stamp?: string;
}

/**
 * An endpoint whose document lives in memory (docs/api.md §6: `data`). Entry *i* of its `entries` is kept on
 * disk only while entry *i* of `saveFlag.endpoint` has `saveFlag.member` true.
 */
export interface LiveRule {
  readonly saveFlag: { readonly endpoint: string; readonly member: string };
}

/** All rules, merged from every schema file. */
export interface Schema {
  readonly types: ReadonlyMap<string, TypeRule>;
  readonly live: ReadonlyMap<string, LiveRule>;
}

/** Strings are bounded so that no document grows without limit; keys have their own bound. */
export const DEFAULT_MAX_STRING_LENGTH = 255;
export const MAX_KEY_LENGTH = 128;

const KINDS: ReadonlySet<string> = new Set<Kind>(["string", "integer", "number", "boolean", "ipv4", "port", "key", "label", "expires", "origins"]);
/** A pair's `label` (docs/api.md §8): at most this many characters, the string rule's characters. */
export const MAX_LABEL_LENGTH = 64;
const INTEGER_TEXT = /^-?(?:0|[1-9][0-9]*)$/;
const NUMBER_TEXT = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IPV4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
// Printable ASCII without the space: what every HTTP client can send back in a header.
const KEY = /^[\x21-\x7e]*$/;
// Characters a string member refuses: C0, DEL and C1 controls (U+009B alone is a CSI to many
// terminals, U+0085 a line break to some), and the bidi embeddings, overrides and isolates, which
// make text display in an order other than the one stored ("Trojan Source", CVE-2021-42574).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/** Whether a value is a key the device accepts (docs/api.md §4): 0 to 128 printable ASCII characters, no space. */
export function isValidKey(value: unknown): value is string {
  return typeof value === "string" && value.length <= MAX_KEY_LENGTH && KEY.test(value);
}

/** Whether an already-typed value is acceptable for the rule (used for bodies and for files). */
export function isValidValue(rule: MemberRule, value: unknown): boolean {
  switch (rule.kind) {
    case "string":
      return (
        typeof value === "string" &&
        value.length <= (rule.maxLength ?? DEFAULT_MAX_STRING_LENGTH) &&
        !CONTROL.test(value)
      );
    case "key":
      return isValidKey(value);
    case "label":
      return typeof value === "string" && value.length <= MAX_LABEL_LENGTH && !CONTROL.test(value);
    case "expires":
      return isValidExpires(value);
    case "origins":
      return isValidOrigins(value);
    case "ipv4":
      return typeof value === "string" && IPV4.test(value);
    case "boolean":
      return typeof value === "boolean";
    case "integer":
      return Number.isSafeInteger(value) && inRange(rule, value as number);
    case "port":
      return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535;
    case "number":
      return typeof value === "number" && Number.isFinite(value) && inRange(rule, value);
  }
}

function inRange(rule: MemberRule, n: number): boolean {
  return (rule.min === undefined || n >= rule.min) && (rule.max === undefined || n <= rule.max);
}

/** What a member takes, in words, for an error's detail: "an integer from 1 to 65535". */
export function describeRule(rule: MemberRule): string {
  switch (rule.kind) {
    case "string":
      return `text of at most ${rule.maxLength ?? DEFAULT_MAX_STRING_LENGTH} characters, without control characters`;
    case "key":
      return `a key: 0 to ${MAX_KEY_LENGTH} printable ASCII characters without spaces (0x21 to 0x7E)`;
    case "ipv4":
      return "an IPv4 address in dotted-quad form, e.g. 192.168.15.100";
    case "boolean":
      return "true or false (or 1 or 0)";
    case "port":
      return "an integer from 1 to 65535";
    case "integer":
      return `an integer${range(rule)}`;
    case "number":
      return `a number${range(rule)}`;
    case "label":
      return `text of at most ${MAX_LABEL_LENGTH} characters, without control characters`;
    case "expires":
      return 'a date and time in UTC, "YYYY-MM-DD HH:MM:SS", or "" for never';
    case "origins":
      return 'a comma-separated list of IPv4/IPv6 addresses and CIDR ranges (at most 32), or "" for any address';
  }
}

function range(rule: MemberRule): string {
  if (rule.min !== undefined && rule.max !== undefined) return ` from ${rule.min} to ${rule.max}`;
  if (rule.min !== undefined) return ` of at least ${rule.min}`;
  if (rule.max !== undefined) return ` of at most ${rule.max}`;
  return "";
}

/** Sentinel for a value that does not convert. */
export const INVALID: unique symbol = Symbol("invalid");

/** Converts a form field's text to the member's kind, or INVALID; the range is checked too. */
export function convertText(rule: MemberRule, text: string): unknown {
  let value: unknown;
  switch (rule.kind) {
    case "string":
    case "key":
    case "ipv4":
    case "label":
    case "expires":
    case "origins":
      value = text;
      break;
    case "boolean":
      value = text === "true" || text === "1" ? true : text === "false" || text === "0" ? false : INVALID;
      break;
    case "integer":
    case "port":
      value = INTEGER_TEXT.test(text) ? Number(text) : INVALID;
      break;
    case "number":
      value = NUMBER_TEXT.test(text) ? Number(text) : INVALID;
      break;
  }
  return value !== INVALID && isValidValue(rule, value) ? value : INVALID;
}

/** Checks a JSON body's value: it must already have the member's JSON type (no coercion from strings); 1 and 0 are booleans too. */
export function convertJson(rule: MemberRule, value: unknown): unknown {
  // docs/api.md §4 names 1 and 0 as booleans too; in JSON they arrive as numbers.
  if (rule.kind === "boolean" && (value === 1 || value === 0)) return value === 1;
  return isValidValue(rule, value) ? value : INVALID;
}

/** Parses the schema files' contents (already JSON-parsed) into one frozen Schema, or throws. */
export function buildSchema(files: ReadonlyArray<{ readonly file: string; readonly content: unknown }>): Schema {
  const types = new Map<string, TypeRule>();
  const live = new Map<string, LiveRule>();
  for (const { file, content } of files) {
    if (!isObject(content)) throw new Error(`${file}: must be a JSON object`);
    const rawTypes = content["types"] ?? {};
    const rawEndpoints = content["endpoints"] ?? {};
    if (!isObject(rawTypes)) throw new Error(`${file}: "types" must be an object`);
    if (!isObject(rawEndpoints)) throw new Error(`${file}: "endpoints" must be an object`);
    for (const [typeName, rawRule] of Object.entries(rawTypes)) {
      if (types.has(typeName)) throw new Error(`${file}: type ${typeName} is described twice`);
      types.set(typeName, parseTypeRule(`${file}: type ${typeName}`, rawRule));
    }
    for (const [endpoint, rawEndpoint] of Object.entries(rawEndpoints)) {
      if (live.has(endpoint)) throw new Error(`${file}: endpoint ${endpoint} is described twice`);
      const where = `${file}: endpoint ${endpoint}`;
      if (!isObject(rawEndpoint) || !isObject(rawEndpoint["live"])) throw new Error(`${where}: expected {"live": {...}}`);
      const flag = rawEndpoint["live"]["saveFlag"];
      if (!isObject(flag) || typeof flag["endpoint"] !== "string" || typeof flag["member"] !== "string") {
        throw new Error(`${where}: live.saveFlag must be {"endpoint": string, "member": string}`);
      }
      live.set(endpoint, Object.freeze({ saveFlag: Object.freeze({ endpoint: flag["endpoint"], member: flag["member"] }) }));
    }
  }
  return Object.freeze({ types, live });
}

function parseTypeRule(where: string, raw: unknown): TypeRule {
  if (!isObject(raw) || !isObject(raw["writable"])) throw new Error(`${where}: expected {"writable": {...}}`);
  const writable = new Map<string, MemberRule>();
  for (const [member, spec] of Object.entries(raw["writable"])) {
    writable.set(member, parseMemberRule(`${where}, member ${member}`, spec));
  }
  const stamp = raw["stamp"];
  if (stamp !== undefined && typeof stamp !== "string") throw new Error(`${where}: "stamp" must be a member name`);
  return Object.freeze(stamp === undefined ? { writable } : { writable, stamp });
}

function parseMemberRule(where: string, spec: unknown): MemberRule {
  if (typeof spec === "string") spec = { kind: spec };
  if (!isObject(spec) || typeof spec["kind"] !== "string" || !KINDS.has(spec["kind"])) {
    throw new Error(`${where}: kind must be one of ${[...KINDS].join(", ")}`);
  }
  const rule: { kind: Kind; min?: number; max?: number; maxLength?: number } = { kind: spec["kind"] as Kind };
  for (const bound of ["min", "max", "maxLength"] as const) {
    const v = spec[bound];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${where}: ${bound} must be a number`);
    rule[bound] = v;
  }
  return Object.freeze(rule);
}

/** A plain JSON object (not an array, not null). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
