/** The --ca file: the PEM certificates trusted for HTTPS devices instead of Node's default roots. */

import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";

/** A --ca file the tool cannot use; the message names the file and why. */
export class CaFileError extends Error {
  override name = "CaFileError";
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Reads every certificate of a PEM file (anything between them is ignored), each checked to parse. */
export async function readCaFile(path: string): Promise<readonly string[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new CaFileError(`--ca ${path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const certificates = text.match(PEM_CERTIFICATE) ?? [];
  if (certificates.length === 0) throw new CaFileError(`--ca ${path}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  certificates.forEach((pem, i) => {
    try {
      new X509Certificate(pem);
    } catch (error) {
      throw new CaFileError(`--ca ${path}: certificate ${i + 1} cannot be read (${(error as Error).message})`);
    }
  });
  return Object.freeze(certificates);
}
