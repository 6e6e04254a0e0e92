/**
 * The output file: every device's working keys, `{"<host>": {"<endpoint>": {"rd", "wr"}}}`. It is
 * the only copy of the keys, so it is replaced atomically (mode 0600) and merged, never truncated.
 */

import * as fsp from "node:fs/promises";
import { basename, dirname } from "node:path";
import { NODE_FS, writeFileDurably } from "../state/store.ts";
import { isPair, type Pair } from "./keys.ts";

/** One device's pairs by endpoint name. */
export type DeviceKeys = Readonly<Record<string, Pair>>;

/** An existing output file the tool will not overwrite, since it cannot tell what it holds. */
export class SecretsFileError extends Error {
  override name = "SecretsFileError";
}

/** Reads an output file; a missing one is empty. Anything but the tool's own format is refused. */
export async function readSecrets(path: string): Promise<{ hosts: Map<string, DeviceKeys>; mode: number | undefined }> {
  let text: string;
  let mode: number | undefined;
  try {
    text = await fsp.readFile(path, "utf8");
    mode = (await fsp.stat(path)).mode & 0o777;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { hosts: new Map(), mode: undefined };
    throw error;
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
    if (!ok) throw new SecretsFileError(`${path}: "${host}" is not {"<endpoint>": {"rd": KEY, "wr": KEY}, ...}; refusing to overwrite it`);
    hosts.set(host, Object.freeze({ ...(keys as Record<string, Pair>) }));
  }
  return { hosts, mode };
}

/** The output file, held in memory and rewritten whole on each change (serialized). */
export class SecretsFile {
  private queue: Promise<unknown> = Promise.resolve();

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
      next.set(host, Object.freeze(complete ? { ...keys } : { ...this.hosts.get(host), ...keys }));
      await writeFileDurably(NODE_FS, dirname(this.path), basename(this.path), JSON.stringify(Object.fromEntries(next), null, 2) + "\n");
      this.hosts = next;
    };
    const done = this.queue.then(work);
    this.queue = done.catch(() => undefined);
    return done;
  }
}
