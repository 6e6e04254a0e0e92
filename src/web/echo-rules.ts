/**
 * What a page may echo of the REST API (docs/homepage.md, "What a page may echo"). A server-side
 * include reads documents without keys: the folder's login is the gate, so a page may only show
 * what its folder's account is meant to see. The rule, by the level of the page's folder:
 *
 * | path under /api/v1/                                | public | ro | rw | su |
 * |----------------------------------------------------|--------|----|----|----|
 * | device/...                                         | yes    | yes| yes| yes|
 * | properties/name                                    | yes    | yes| yes| yes|
 * | data/..., process/...                              |        | yes| yes| yes|
 * | apikeys/keys/<i>/name, .../rd of a `data` or `process` pair |  | yes| yes| yes|
 * | apikeys/keys/<i>/wr, apikeys/keys/<i> of those pairs |      |    | yes| yes|
 * | anything else (other properties, the accounts, any other pair, the apikeys pair, vendor endpoints) | | | | yes |
 */

import type { Level } from "./basic-auth.ts";
import { APIKEYS_ENDPOINT, DEVICE_ENDPOINT, type Device } from "../state/device.ts";
import { select } from "../state/documents.ts";
import { isObject } from "../state/schema.ts";

/** The pairs whose keys the ro and rw pages use: live values, and the points' names and units. */
export const PAGE_PAIRS: ReadonlySet<string> = new Set(["data", "process"]);

/** Allowed, or refused with the reason the log gives (names of endpoints and pairs only, never a value). */
export type EchoVerdict = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

const ALLOWED: EchoVerdict = Object.freeze({ allowed: true });
const refused = (reason: string): EchoVerdict => ({ allowed: false, reason });

/** Whether a page of `level` may echo the document path `segments` ([endpoint, ...members]). */
export function echoAllowed(level: Level, segments: readonly string[], device: Device): EchoVerdict {
  const [endpoint, ...path] = segments;
  if (level === 3) return ALLOWED;
  if (endpoint === DEVICE_ENDPOINT) return ALLOWED;
  if (endpoint === "properties") {
    return path.length === 1 && path[0] === "name" ? ALLOWED : refused("properties other than its name are for su pages only");
  }
  if (endpoint !== undefined && PAGE_PAIRS.has(endpoint)) {
    return level >= 1 ? ALLOWED : refused(`the ${endpoint} endpoint is for the ro, rw and su folders`);
  }
  if (endpoint === APIKEYS_ENDPOINT) return keyAllowed(level, path, device);
  return refused(`the ${endpoint ?? "(none)"} endpoint is for su pages only`);
}

/** apikeys/keys/<i>[/member]: the data and process pairs' read keys from ro, write keys from rw. */
function keyAllowed(level: Level, path: readonly string[], device: Device): EchoVerdict {
  if (path[0] !== "keys" || path.length < 2 || path.length > 3) return refused("only single pairs of the apikeys document are for pages outside su");
  const pair = select(device.endpoints.get(APIKEYS_ENDPOINT)?.docs.committed, path.slice(0, 2))?.value;
  const name = isObject(pair) && typeof pair["name"] === "string" ? pair["name"] : undefined;
  if (name === undefined) return refused("no such pair");
  if (!PAGE_PAIRS.has(name)) return refused(`a key of the ${name} pair is for su pages only`);
  const member = path[2];
  const needs: Level = member === "name" || member === "rd" ? 1 : 2;
  if (level < needs) return refused(`the ${member ?? "whole"} ${member === undefined ? "pair" : "key"} of the ${name} pair is for the ${needs === 1 ? "ro" : "rw"} folder and above`);
  return ALLOWED;
}
