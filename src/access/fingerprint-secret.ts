/**
 * The device's fingerprint secret: 32 random bytes in `<stateDir>/fingerprint.key` (mode 600), the
 * HMAC key of the fingerprints that log lines carry instead of keys (access/keys.ts fingerprint()).
 * Made once, exclusively, the first time the server starts (or `keys set` runs) on a state folder;
 * never served (no endpoint maps to it), never logged, kept by `reset` and by SIGHUP reloads.
 */

import { closeSync, fchmodSync, fstatSync, openSync, promises as fsp, readFileSync } from "node:fs";
import { join } from "node:path";
import { FINGERPRINT_SECRET_BYTES, newFingerprintSecret } from "./keys.ts";
import { NODE_FS, syncFolder } from "../state/store.ts";

export { newFingerprintSecret };
export const FINGERPRINT_SECRET_FILE = "fingerprint.key";

/** The secret cannot be read or made: the message names the file and what to do. */
export class FingerprintSecretError extends Error {
  override name = "FingerprintSecretError";
}

export interface SecretOptions {
  /** Make the file if it is missing (the server, `keys set`); false for commands that only read. */
  readonly create?: boolean;
  /** Told when the file was readable by others and set to 600. */
  readonly warn?: (message: string) => void;
}

let tempSequence = 0;

/** Reads `<stateDir>/fingerprint.key`, making it first if asked and missing. */
export async function loadFingerprintSecret(stateDir: string, options: SecretOptions = {}): Promise<Buffer> {
  const path = join(stateDir, FINGERPRINT_SECRET_FILE);
  // Two rounds: when another process makes the file between our read and our link, we read theirs.
  for (let round = 0; round < 2; round++) {
    const secret = await readSecret(path, options);
    if (secret !== undefined) return secret;
    if (options.create !== true) {
      throw new FingerprintSecretError(`${path}: missing; the server makes it when it starts (fingerprints are keyed by it)`);
    }
    await makeSecret(stateDir, path);
  }
  throw new FingerprintSecretError(`${path}: cannot be made`);
}

/** Reads the secret (synchronous, as the start's other reads: config-folder.ts says why). */
async function readSecret(path: string, options: SecretOptions): Promise<Buffer | undefined> {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw new FingerprintSecretError(`${path}: cannot be read (${code})`);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new FingerprintSecretError(`${path}: not a file`);
    const secret = readFileSync(fd);
    if (secret.length !== FINGERPRINT_SECRET_BYTES) {
      // Never the content: it is the secret, even when damaged.
      throw new FingerprintSecretError(
        `${path}: damaged (${secret.length} bytes, not ${FINGERPRINT_SECRET_BYTES}); stop the server, delete the file and start again ` +
          `(a new secret: fingerprints in earlier log lines will no longer match)`,
      );
    }
    if ((stats.mode & 0o077) !== 0 && options.create === true) {
      fchmodSync(fd, 0o600);
      options.warn?.(`${path} was readable by others (mode ${(stats.mode & 0o777).toString(8)}); set to 600`);
    }
    return secret;
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the secret to a temp file (a name the start-up clears if a crash leaves it), flushes it,
 * and links it into place: link() refuses an existing name, so the first process wins and the
 * file is never seen half written.
 */
async function makeSecret(stateDir: string, path: string): Promise<void> {
  const temp = join(stateDir, `.${FINGERPRINT_SECRET_FILE}.${process.pid}-${++tempSequence}.tmp`);
  const handle = await fsp.open(temp, "wx", 0o600).catch((error: NodeJS.ErrnoException) => {
    throw new FingerprintSecretError(`${path}: cannot be made (${error.code})`);
  });
  try {
    try {
      await handle.writeFile(newFingerprintSecret());
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.link(temp, path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw new FingerprintSecretError(`${path}: cannot be made (${error.code})`);
    });
    await syncFolder(NODE_FS, stateDir);
  } finally {
    await fsp.unlink(temp).catch(() => undefined);
  }
}
