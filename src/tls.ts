/** HTTPS (`--tls-cert`, `--tls-key`): reading the PEM files and checking that they make a usable pair. */

import { readFile } from "node:fs/promises";
import { createSecureContext } from "node:tls";

/** The certificate chain and private key, PEM, checked to load together. */
export interface TlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** A certificate or key that cannot be used; the message names the file. */
export class TlsFileError extends Error {
  override name = "TlsFileError";
}

/** Reads both files and checks them with OpenSSL (parse, and the key matches the certificate). */
export async function readTlsFiles(certFile: string, keyFile: string): Promise<TlsFiles> {
  const read = async (file: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (error) {
      throw new TlsFileError(`${what} ${file}: cannot be read (${(error as NodeJS.ErrnoException).code})`);
    }
  };
  const cert = await read(certFile, "certificate");
  const key = await read(keyFile, "key");
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    // OpenSSL's reason ("no start line", "key values mismatch"); never the file's content.
    throw new TlsFileError(`certificate ${certFile} with key ${keyFile}: ${(error as Error).message}`);
  }
  return { cert, key };
}
