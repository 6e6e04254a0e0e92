/**
 * What the pipeline needs of a request's headers, read in one pass over node's raw header list:
 * the Host lines, the key headers and whether a body follows. Node's `req.headers` is an object
 * built on first use from the raw list (every name lower-cased, repeats joined); the bare node:http
 * server never builds it, and on the read path it was the largest allocation of our own.
 */

import { DUPLICATED } from "../access/keys.ts";

/** One request's headers as the pipeline sees them. */
export interface Heads {
  /** The first Host value (the one node keeps), and how many Host lines came. */
  readonly host: string | undefined;
  readonly hostLines: number;
  /** ApiRdKey and ApiWrKey; DUPLICATED when sent more than once. */
  readonly rd: string | undefined | typeof DUPLICATED;
  readonly wr: string | undefined | typeof DUPLICATED;
  /** A body follows the headers: Transfer-Encoding, or a Content-Length other than 0. */
  readonly body: boolean;
}

/** Reads the raw header list (name, value, name, value, ...) once; names are compared case-insensitively. */
export function scanHeads(raw: readonly string[]): Heads {
  let host: string | undefined;
  let hostLines = 0;
  let rd: string | undefined | typeof DUPLICATED;
  let wr: string | undefined | typeof DUPLICATED;
  let length: string | undefined;
  let chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    // Only names of the lengths looked for are lower-cased (most headers are none of them).
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === "host") {
          if (hostLines++ === 0) host = raw[i + 1];
        }
        break;
      case 8: {
        const lower = name.toLowerCase();
        if (lower === "apirdkey") rd = rd === undefined ? raw[i + 1] : DUPLICATED;
        else if (lower === "apiwrkey") wr = wr === undefined ? raw[i + 1] : DUPLICATED;
        break;
      }
      case 14:
        if (length === undefined && name.toLowerCase() === "content-length") length = raw[i + 1];
        break;
      case 17:
        if (name.toLowerCase() === "transfer-encoding") chunked = true;
        break;
    }
  }
  return { host, hostLines, rd, wr, body: chunked || (length !== undefined && length !== "0") };
}
