/**
 * The names a device answers to (docs/api.md §11): `<name>-<last 6 hex digits of the MAC>.local`,
 * lower case, from `properties.name` and the `device` endpoint's `address`, and the same label as
 * the instance name of its `_http._tcp` (or `_https._tcp`) service.
 */

import type { Json } from "../state/documents.ts";

/** What the names and the TXT record are made of, read from the committed documents. */
export interface Identity {
  /** `properties.name`, as written. */
  readonly name: string;
  /** The MAC of the `device` endpoint, hex digits only, upper case ("004082ABCDEF"). */
  readonly mac: string;
  /** The board's pcb name ("mkc1601"), or "" when the document has none. */
  readonly board: string;
  /** The part number, as text ("101648"), or "". */
  readonly partNumber: string;
}

const MAX_LABEL = 63;
/** Room kept for a rename suffix ("-99"). */
const SUFFIX_ROOM = 4;

/**
 * The host label: the name lower-cased, accents dropped, every run of characters that a host
 * name label cannot hold (anything but a-z, 0-9 and '-') made one '-', then '-' and the last six
 * hex digits of the MAC. "eNetMini1" and 004082ABCDEF give "enetmini1-abcdef".
 */
export function hostLabel(identity: Pick<Identity, "name" | "mac">): string {
  const mac = identity.mac.replace(/[^0-9A-Fa-f]/g, "").toLowerCase().slice(-6);
  let base = identity.name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-{2,}/g, "-")
    .replace(/^-+|-+$/g, "");
  const tail = mac === "" ? "" : `-${mac}`;
  base = base.slice(0, MAX_LABEL - SUFFIX_ROOM - tail.length).replace(/-+$/, "");
  if (base === "") base = "device";
  return base + tail;
}

/** The label after the n-th conflict: "x", then "x-2", "x-3" ... (RFC 6762 §9 leaves the form open). */
export function renamed(label: string, attempt: number): string {
  return attempt <= 1 ? label : `${label}-${attempt}`;
}

/** Reads the identity from the `device` and `properties` documents; missing members read as "". */
export function readIdentity(deviceDoc: Json | undefined, propertiesDoc: Json | undefined): Identity {
  const deviceObject = Array.isArray(deviceDoc) ? deviceDoc[0] : deviceDoc;
  const field = (doc: Json | undefined, ...path: string[]): string => {
    let at: unknown = doc;
    for (const key of path) at = typeof at === "object" && at !== null && !Array.isArray(at) ? (at as Record<string, unknown>)[key] : undefined;
    return typeof at === "string" || typeof at === "number" ? String(at) : "";
  };
  return {
    name: field(propertiesDoc, "name"),
    mac: field(deviceObject, "address").replace(/[^0-9A-Fa-f]/g, "").toUpperCase(),
    board: field(deviceObject, "board", "pcb", "name"),
    partNumber: field(deviceObject, "board", "partNumber"),
  };
}
