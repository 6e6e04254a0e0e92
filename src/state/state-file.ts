/**
 * One state file (docs/api.md §6): how a document is written to disk, and how a file is read back
 * and checked, exactly as a start, a reload and `check` do it.
 */

import { closeSync, constants, fstatSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { keyringProblems } from "../access/keys.ts";
import { APIKEYS_ENDPOINT } from "./device.ts";
import { rootProblem, shapeProblems, upgradeRevisions, type Json } from "./documents.ts";
import { isObject, type Schema } from "./schema.ts";

/** Serialized form of a state file: indented for the technician who opens it, newline-terminated. */
export function fileText(doc: unknown): string {
  return JSON.stringify(doc, null, 2) + "\n";
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
    text = readNoFollow(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { status: "missing" };
    // A link could point the device at any file of the system, or hand its writes to another user.
    if (code === "ELOOP") return { status: "invalid", problems: [`${path}: is a symbolic link; a state file must be a plain file (replace the link by the file it points to)`] };
    return { status: "invalid", problems: [`${path}: cannot be read (${code})`] };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { status: "invalid", problems: [`${path}: not valid JSON (a damaged state file; see "Recovery" in docs/operations.md)`] };
  }
  const root = rootProblem(parsed, factoryDoc);
  if (root !== undefined) return { status: "invalid", problems: [`${path}: ${root}`] };
  // JSON.parse makes nothing but JSON values; the shape rules below check the rest.
  const read = parsed as Json;
  const doc = upgradeRevisions(read, factoryDoc);
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
 * Reads a file without following a symbolic link at its name (ELOOP then). Synchronous: a state file
 * is a few KiB, read in place in a fraction of a thread-pool round trip (a start reads eight).
 */
function readNoFollow(path: string): string {
  // O_NONBLOCK and the checks below: a FIFO or a huge file planted under a state file's name must
  // not hold the event loop (a SIGHUP reads these while the server serves).
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw Object.assign(new Error("not a regular file"), { code: "ENOTREG" });
    if (stats.size > MAX_STATE_FILE_BYTES) throw Object.assign(new Error("too large"), { code: "EFBIG" });
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/** A state file is a few KiB; anything far larger is not one. */
const MAX_STATE_FILE_BYTES = 4 * 1024 * 1024;
