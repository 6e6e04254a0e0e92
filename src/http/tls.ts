/** HTTPS (`--tls-cert`, `--tls-key`): reading the PEM files and checking that they make a usable pair. */

import { promises as fsp } from "node:fs";
import type * as https from "node:https";
import { loadBuiltin } from "../common/builtins.ts";
import type * as tls from "node:tls";

// node:tls and node:https are loaded on first use: loading them took about 3 ms of every start
// (`npm run bench`, start to listening), and most devices serve plain HTTP.

/** node:tls, loaded on first use. */
export const tlsModule = (): typeof tls => loadBuiltin<typeof tls>("node:tls");

/** node:https, loaded on first use. */
export const httpsModule = (): typeof https => loadBuiltin<typeof https>("node:https");

/** The certificate chain and private key, PEM, checked to load together. */
export interface TlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** What is usable but unwise (a key file others may read), for the log and `check`. */
  readonly warnings: readonly string[];
}

/** A certificate or key that cannot be used; the message names the file. */
export class TlsFileError extends Error {
  override name = "TlsFileError";
}

/** Reads both files and checks them with OpenSSL (parse, and the key matches the certificate). */
export async function readTlsFiles(certFile: string, keyFile: string): Promise<TlsFiles> {
  const read = async (file: string, what: string): Promise<Buffer> => {
    try {
      return await fsp.readFile(file);
    } catch (error) {
      throw new TlsFileError(`${what} ${file}: cannot be read (${(error as NodeJS.ErrnoException).code})`);
    }
  };
  const cert = await read(certFile, "certificate");
  const key = await read(keyFile, "key");
  try {
    tlsModule().createSecureContext({ cert, key });
  } catch (error) {
    // OpenSSL's reason ("no start line", "key values mismatch"); never the file's content.
    throw new TlsFileError(`certificate ${certFile} with key ${keyFile}: ${(error as Error).message}`);
  }
  return { cert, key, warnings: await keyFileWarnings(keyFile) };
}

/**
 * A private key that every user of the device may read hands them the server's identity. Only
 * "others" is warned of: a group such as Debian's ssl-cert is the usual way to share a key.
 */
async function keyFileWarnings(keyFile: string): Promise<string[]> {
  const mode = (await fsp.stat(keyFile).catch(() => undefined))?.mode;
  if (mode === undefined || (mode & 0o004) === 0) return [];
  return [`key ${keyFile} is readable by every user (mode ${(mode & 0o777).toString(8)}); chmod o-r it`];
}
