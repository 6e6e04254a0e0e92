/**
 * The config folder (docs/api.md §1, §6): the factory documents and the schema of their members,
 * read and checked once; never written.
 */

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { buildKeyring, keyringProblems } from "../access/keys.ts";
import { jsonFaultPosition } from "../common/json-position.ts";
import { APIKEYS_ENDPOINT, DEVICE_ENDPOINT, ENDPOINT_FILE, StartupError } from "./device.ts";
import { deepFreeze, shapeProblems, type Json } from "./documents.ts";
import { buildSchema, type Schema } from "./schema.ts";

/** The factory documents by endpoint name, and the rules of their members. */
export interface Factory {
  readonly schema: Schema;
  readonly factory: ReadonlyMap<string, Json>;
}

/**
 * Start-up reads are synchronous: nothing else runs yet, and a small file read in place took a tenth
 * of a thread-pool round trip (start to listening, `npm run bench`).
 */
function readJson(path: string): unknown {
  const text = readFileSync(path, "utf8");
  try {
    return JSON.parse(text);
  } catch {
    // Only the position: V8's message may quote the text around it, and this file may hold keys.
    throw new StartupError(`${path}: not valid JSON (${jsonFaultPosition(text)})`);
  }
}

/** Reads the schema files of `<configDir>/schema/` (optional folder). */
async function loadSchema(configDir: string): Promise<Schema> {
  const dir = join(configDir, "schema");
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".json")).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return buildSchema([]);
    throw new StartupError(`${dir}: cannot be read (${(error as NodeJS.ErrnoException).code})`);
  }
  const files = [];
  for (const name of names) files.push({ file: join(dir, name), content: readJson(join(dir, name)) });
  try {
    return buildSchema(files);
  } catch (error) {
    throw new StartupError((error as Error).message);
  }
}

/** Reads and checks the config folder: the factory documents and their rules. */
export async function loadFactory(configDir: string): Promise<Factory> {
  const schema = await loadSchema(configDir);
  let entries: string[];
  try {
    entries = readdirSync(configDir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name).sort();
  } catch (error) {
    throw new StartupError(`config folder ${configDir}: cannot be read (${(error as NodeJS.ErrnoException).code})`);
  }
  const factory = new Map<string, Json>();
  const problems: string[] = [];
  for (const file of entries) {
    if (!file.endsWith(".json") || file.startsWith(".")) continue;
    const match = ENDPOINT_FILE.exec(file);
    const path = join(configDir, file);
    if (match === null) {
      problems.push(`${path}: an endpoint name may hold only letters, digits, "_", "-" and "."`);
      continue;
    }
    let doc: unknown;
    try {
      doc = readJson(path);
    } catch (error) {
      problems.push(error instanceof StartupError ? error.message : `${path}: cannot be read`);
      continue;
    }
    for (const p of shapeProblems(doc, schema)) problems.push(`${path}: ${p}`);
    factory.set(match[1] as string, deepFreeze(doc as Json));
  }
  const apikeys = factory.get(APIKEYS_ENDPOINT);
  if (apikeys === undefined) {
    problems.push(`${join(configDir, "apikeys.json")}: missing; every device needs its key pairs`);
  } else {
    for (const p of keyringProblems(apikeys)) problems.push(`${join(configDir, "apikeys.json")}: ${p}`);
    const ring = buildKeyring(apikeys);
    for (const name of factory.keys()) {
      if (name !== DEVICE_ENDPOINT && !ring.has(name)) {
        problems.push(`${join(configDir, name + ".json")}: endpoint "${name}" has no key pair in apikeys.json`);
      }
    }
  }
  for (const [endpoint, rule] of schema.live) {
    if (!factory.has(endpoint)) continue;
    if (!factory.has(rule.saveFlag.endpoint)) {
      problems.push(`schema: live endpoint "${endpoint}" takes its save flags from "${rule.saveFlag.endpoint}", which does not exist`);
    }
  }
  if (problems.length > 0) throw new StartupError(problems.join("\n"));
  return { schema, factory };
}
