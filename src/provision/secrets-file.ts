/**
 * The output file: every device's working keys, `{"<host>": {"<endpoint>": {"rd", "wr"}}}`. It is
 * the only copy of the keys, so it is replaced atomically (mode 0600) and merged, never truncated.
 * Endpoint names come from devices: they are kept in Maps, never as an object's keys, so that a
 * pair named "__proto__" or "constructor" is a pair like any other.
 */

import { basename, dirname } from "node:path";
import { printable } from "../common/printable.ts";
import { NODE_FS, writeFileDurably } from "../state/store.ts";
import { openOwnFile } from "./files.ts";
import { isPair, type Pair } from "./keys.ts";

/** One device's pairs by endpoint name. */
export type DeviceKeys = ReadonlyMap<string, Pair>;

/** An existing output file the tool will not overwrite, since it cannot tell what it holds. */
export class SecretsFileError extends Error {
  override name = "SecretsFileError";
}

/**
 * Reads an output file; a missing one is empty. Anything but the tool's own format is refused, and
 * so is a file the tool cannot trust with keys (files.ts checkOwnFile). `tighten`: a file readable
 * by others is made 0600 (through the open file, never through a name); `mode` is what it was.
 */
export async function readSecrets(path: string, tighten = false): Promise<{ hosts: Map<string, DeviceKeys>; mode: number | undefined }> {
  const opened = await openOwnFile(path, "output file");
  if (opened === undefined) return { hosts: new Map(), mode: undefined };
  let text: string;
  const mode = opened.stat.mode & 0o777;
  try {
    text = await opened.handle.readFile("utf8");
    if (tighten && (mode & 0o077) !== 0) await opened.handle.chmod(0o600);
  } finally {
    await opened.handle.close();
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new SecretsFileError(`${path} exists and is not JSON; refusing to overwrite it (move it away, or fix it)`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new SecretsFileError(`${path} is not an object of hosts; refusing to overwrite it`);
  }
  const hosts = new Map<string, DeviceKeys>();
  for (const [host, keys] of Object.entries(doc)) {
    const ok = typeof keys === "object" && keys !== null && !Array.isArray(keys) && Object.values(keys).every(isPair);
    if (!ok) throw new SecretsFileError(`${path}: "${printable(host)}" is not {"<endpoint>": {"rd": KEY, "wr": KEY}, ...}; refusing to overwrite it`);
    hosts.set(host, new Map(Object.entries(keys as Record<string, Pair>).map(([name, p]) => [name, Object.freeze({ rd: p.rd, wr: p.wr })])));
  }
  return { hosts, mode };
}

/** The output file, held in memory and rewritten whole on each change (serialized). */
export class SecretsFile {
  private queue: Promise<unknown> = Promise.resolve();
  /** Whether this run has written the file (the summary names it only then). */
  written = false;

  constructor(
    readonly path: string,
    private hosts: Map<string, DeviceKeys>,
  ) {}

  /** What the file says about a host. */
  get(host: string): DeviceKeys | undefined {
    return this.hosts.get(host);
  }

  /**
   * Records a device's keys and resolves once they are on disk. `complete` replaces the host's
   * entry with exactly `keys` (the device's full set); otherwise `keys` are merged into it.
   * Other hosts' entries are kept as they are.
   */
  record(host: string, keys: DeviceKeys, complete: boolean): Promise<void> {
    const work = async (): Promise<void> => {
      const next = new Map(this.hosts);
      next.set(host, new Map(complete ? keys : [...(this.hosts.get(host) ?? []), ...keys]));
      await writeFileDurably(NODE_FS, dirname(this.path), basename(this.path), serialize(next));
      this.written = true;
      this.hosts = next;
    };
    const done = this.queue.then(work);
    this.queue = done.catch(() => undefined);
    return done;
  }
}

/**
 * The file's text. Object.fromEntries defines each name as an own property (as JSON.parse does), so
 * "__proto__" is written out like any other name.
 */
function serialize(hosts: ReadonlyMap<string, DeviceKeys>): string {
  const doc = Object.fromEntries([...hosts].map(([host, keys]) => [host, Object.fromEntries(keys)]));
  return JSON.stringify(doc, null, 2) + "\n";
}
