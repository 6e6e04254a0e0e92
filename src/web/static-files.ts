/**
 * The web root (docs/homepage.md): request paths to files, never a byte from outside the root. A path
 * is checked twice: as the client wrote it (no dot segment, no encoded slash, backslash or NUL, no
 * empty segment), then as the file system resolves it (realpath inside the real root, no dot-file on
 * the way). The file is opened without following a last symlink and, where /proc tells, the opened
 * file's own path is checked once more, so a folder swapped for a symlink after the check still
 * yields nothing from outside.
 */

import { constants, promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { SYSTEM_CLOCK, type Clock } from "../common/clock.ts";
import { extname, join, sep } from "node:path";

/** Files above this are not served (the appliance holds them in memory while answering). */
export const MAX_FILE_BYTES = 1024 * 1024;

/** The index files of a folder, in the order they are looked for. */
export const INDEX_FILES = ["index.html", "index.shtml"] as const;

/** A request path as segments; `folder` true when it ended with "/". */
export interface WebPath {
  readonly segments: readonly string[];
  readonly folder: boolean;
}

/**
 * Splits and percent-decodes a request path ("/ro/index.shtml"). Returns "bad" for malformed
 * percent-encoding, and "refused" for anything that could name something outside the root or
 * hidden in it: a "." or ".." segment (raw or encoded), a segment starting with a dot, an empty
 * segment, a slash, backslash or NUL inside a segment (raw or encoded).
 */
export function parseWebPath(path: string): WebPath | "bad" | "refused" {
  if (!path.startsWith("/")) return "refused";
  const parts = path.slice(1).split("/");
  const folder = parts[parts.length - 1] === "";
  if (folder) parts.pop();
  const segments: string[] = [];
  for (const part of parts) {
    let segment = part;
    if (part.indexOf("%") !== -1) {
      try {
        segment = decodeURIComponent(part);
      } catch {
        return "bad";
      }
    }
    if (segment === "" || segment.startsWith(".") || /[/\\\0]/.test(segment)) return "refused";
    segments.push(segment);
  }
  return { segments, folder };
}

/** The web root, resolved once at start (symlinks of the root itself are the vendor's choice). */
/**
 * How long a resolved path and a read file are reused. Each fresh look costs a realpath, an open,
 * a readlink of /proc and a read (about 80 µs of server CPU per static file in `npm run bench`,
 * a seventh of bare node:http); the vendor's files change rarely, and a change shows within this.
 * A reused answer was checked inside the root when it was read, so it never serves a byte from
 * outside it, whatever happens to the files meanwhile.
 */
const REUSE_MS = 1_000;
/** Bounds of what is kept: entries, and bytes of file content (a larger file is read every time). */
const MAX_REUSED_ENTRIES = 512;
const MAX_REUSED_BYTES = 4 * 1024 * 1024;
const MAX_REUSED_FILE_BYTES = 256 * 1024;

/** A small time-bounded memo: entries older than REUSE_MS are looked up again. */
class Recent<V> {
  private readonly entries = new Map<string, { readonly at: number; readonly value: V }>();
  private bytes = 0;

  constructor(
    private readonly clock: Clock,
    private readonly sizeOf: (value: V) => number,
  ) {}

  async get(key: string, look: () => Promise<V>): Promise<V> {
    const now = this.clock();
    const hit = this.entries.get(key);
    if (hit !== undefined && now - hit.at < REUSE_MS) return hit.value;
    const value = await look();
    const size = this.sizeOf(value);
    if (size > MAX_REUSED_FILE_BYTES) return value;
    if (this.entries.size >= MAX_REUSED_ENTRIES || this.bytes + size > MAX_REUSED_BYTES) {
      this.entries.clear();
      this.bytes = 0;
    }
    const old = this.entries.get(key);
    if (old !== undefined) this.bytes -= this.sizeOf(old.value);
    this.entries.set(key, { at: now, value });
    this.bytes += size;
    return value;
  }
}

export class WebRoot {
  private readonly resolvedPaths: Recent<{ real: string; relative: string[] } | undefined>;
  private readonly reads: Recent<FileRead>;

  private constructor(
    /** The real path of the root, without a trailing separator. */
    readonly real: string,
    clock: Clock,
  ) {
    this.resolvedPaths = new Recent(clock, () => 0);
    this.reads = new Recent(clock, (read) => (read.kind === "file" ? read.size : 0));
  }

  /** A file read (readWebFile), reused for up to a second. */
  read(real: string): Promise<FileRead> {
    return this.reads.get(real, () => readFileUnder(this, real));
  }

  /** Resolves the folder; undefined when it does not exist or is not a folder (the homepage then answers 404). */
  static async open(dir: string, clock: Clock = SYSTEM_CLOCK): Promise<WebRoot | undefined> {
    try {
      const real = await fsp.realpath(dir);
      if (!(await fsp.stat(real)).isDirectory()) return undefined;
      return new WebRoot(real, clock);
    } catch {
      return undefined;
    }
  }

  /**
   * The real path of `segments` under the root, or undefined when it does not exist or resolves
   * outside the root or onto a dot-file (a symlink pointing out counts as missing).
   */
  resolve(segments: readonly string[]): Promise<{ real: string; relative: string[] } | undefined> {
    return this.resolvedPaths.get(segments.join("\0"), () => this.resolveNow(segments));
  }

  private async resolveNow(segments: readonly string[]): Promise<{ real: string; relative: string[] } | undefined> {
    let real: string;
    try {
      real = await fsp.realpath(join(this.real, ...segments));
    } catch {
      return undefined;
    }
    const relative = this.relativeOf(real);
    return relative === undefined ? undefined : { real, relative };
  }

  /** The segments of a real path under the root; undefined outside it or through a dot-file. */
  relativeOf(real: string): string[] | undefined {
    if (real === this.real) return [];
    if (!real.startsWith(this.real + sep)) return undefined;
    const relative = real.slice(this.real.length + 1).split(sep);
    return relative.some((s) => s === "" || s.startsWith(".")) ? undefined : relative;
  }
}

/** What reading a file gave. */
export type FileRead =
  | { readonly kind: "file"; readonly body: Buffer; readonly mtimeMs: number; readonly size: number; readonly ino: number }
  | { readonly kind: "folder" }
  | { readonly kind: "missing" }
  | { readonly kind: "too-large"; readonly size: number };

// O_NOFOLLOW: a last component that became a symlink since realpath fails (ELOOP). O_NONBLOCK: a
// FIFO planted in the root cannot hold the request (it is then refused as not a regular file).
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/** Reads a file already resolved under the root (a real path), whole, if it is a regular file within the size bound (reused for up to a second). */
export function readWebFile(root: WebRoot, real: string): Promise<FileRead> {
  return root.read(real);
}

async function readFileUnder(root: WebRoot, real: string): Promise<FileRead> {
  let handle: FileHandle;
  try {
    handle = await fsp.open(real, OPEN_FLAGS);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EISDIR") return { kind: "folder" };
    return { kind: "missing" };
  }
  try {
    if (!(await openedInside(root, handle))) return { kind: "missing" };
    const info = await handle.stat();
    if (info.isDirectory()) return { kind: "folder" };
    if (!info.isFile()) return { kind: "missing" };
    if (info.size > MAX_FILE_BYTES) return { kind: "too-large", size: info.size };
    const body = Buffer.alloc(info.size);
    let filled = 0;
    while (filled < body.length) {
      const { bytesRead } = await handle.read(body, filled, body.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return { kind: "file", body: filled === body.length ? body : body.subarray(0, filled), mtimeMs: info.mtimeMs, size: filled, ino: info.ino };
  } finally {
    await handle.close();
  }
}

/** Where /proc shows the opened file's path (Linux), it must lie under the root too. */
async function openedInside(root: WebRoot, handle: FileHandle): Promise<boolean> {
  let opened: string;
  try {
    opened = await fsp.readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    return true; // no /proc: realpath and O_NOFOLLOW were the checks
  }
  return root.relativeOf(opened) !== undefined;
}

const TEXT = "; charset=utf-8";

/** Content types of the usual web files; anything else is application/octet-stream. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html" + TEXT,
  ".htm": "text/html" + TEXT,
  ".shtml": "text/html" + TEXT,
  ".css": "text/css" + TEXT,
  ".js": "text/javascript" + TEXT,
  ".mjs": "text/javascript" + TEXT,
  ".json": "application/json",
  ".map": "application/json",
  ".webmanifest": "application/manifest+json",
  ".txt": "text/plain" + TEXT,
  ".xml": "application/xml",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".pdf": "application/pdf",
};

/** The Content-Type of a file name. */
export function contentTypeOf(name: string): string {
  return CONTENT_TYPES[extname(name).toLowerCase()] ?? "application/octet-stream";
}
