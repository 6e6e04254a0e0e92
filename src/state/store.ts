/**
 * The state folder (docs/api.md §6): atomic, durable file writes and the per-document commit queue that
 * applies concurrent changes one after another and lets them share one flush.
 */

import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";

/** The file-system calls the store makes; tests hand in one that can be told to fail. */
export interface StoreFs {
  open(path: string, flags: string, mode?: number): Promise<FileHandle>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
}

const TEMP_SUFFIX = ".tmp";
let tempSequence = 0;

/** Whether a name in the state folder is one of our temporary files (left behind by a crash). */
export function isTempFileName(name: string): boolean {
  return name.startsWith(".") && name.endsWith(TEMP_SUFFIX);
}

/**
 * Replaces `dir/name` with `text` so that a power cut at any instant leaves the old or the new
 * file, never a torn one: write a temporary file, flush it, rename it over, flush the folder.
 */
export async function writeFileDurably(fs: StoreFs, dir: string, name: string, text: string): Promise<void> {
  const temp = join(dir, `.${name}.${process.pid}-${++tempSequence}${TEMP_SUFFIX}`);
  let renamed = false;
  try {
    const handle = await fs.open(temp, "wx", 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, join(dir, name));
    renamed = true;
    await syncFolder(fs, dir);
  } finally {
    if (!renamed) await fs.unlink(temp).catch(() => undefined);
  }
}

/** Flushes a folder's entries (the rename) to the disk. */
export async function syncFolder(fs: StoreFs, dir: string): Promise<void> {
  const handle = await fs.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The real file system. */
// Looked up at each call: node:fs's `promises` loads its module on first use (the first write), not
// at every start, which only reads (synchronously).
export const NODE_FS: StoreFs = {
  open: (path, flags, mode) => fsp.open(path, flags, mode),
  rename: (from, to) => fsp.rename(from, to),
  unlink: (path) => fsp.unlink(path),
};

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * One document and its way to disk. Readers see `committed`: a change becomes visible only once it
 * is durable. Writers stage on `latest` (which includes changes still being flushed), so concurrent
 * writes never lose each other; changes that arrive while a flush runs are committed together by
 * the next one. A failed flush fails every change staged on top of it and leaves things as they were.
 */
export class CommitQueue<T> {
  private committedDoc: T;
  private latestDoc: T;
  private queue: Waiter[] = [];
  private flushing = false;
  private onDisk: string | undefined;
  /** Counts change() calls, so that a flush can tell whether `latest` was staged on during its write. */
  private staged = 0;
  /** Live edits made while a flush writes (applyLive): replayed on the document that flush commits. */
  private liveDuringFlush: Array<(doc: T) => T> | undefined;

  constructor(
    initial: T,
    /** The text a document is stored as (undefined: nothing to store); equal texts are not rewritten. */
    private readonly persist: (doc: T) => string | undefined,
    /** Makes a text durable (writeFileDurably, in production). */
    private readonly write: (text: string) => Promise<void>,
    private readonly onCommit: (doc: T) => void,
  ) {
    this.committedDoc = initial;
    this.latestDoc = initial;
    this.onDisk = persist(initial);
  }

  /** What readers see: the last durable version. */
  get committed(): T {
    return this.committedDoc;
  }

  /** What writers build on: the committed version plus every change still on its way to disk. */
  get latest(): T {
    return this.latestDoc;
  }

  /** Stages `next` (built from `latest`) and resolves once it is durable and visible. */
  change(next: T): Promise<void> {
    this.latestDoc = next;
    this.staged++;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  /**
   * Applies `edit` at once, in memory only: for changes that do not alter what the document is
   * stored as (the live values of docs/api.md §6, reported by the I/O driver). Readers see it at
   * once and onCommit runs (cached answers are dropped); a change staged or being written meanwhile
   * gets the edit too, so its commit, or its failure, keeps it. Returns false and changes nothing
   * when the edit would alter the stored text: such a change must go through change().
   */
  applyLive(edit: (doc: T) => T): boolean {
    const committed = edit(this.committedDoc);
    if (committed === this.committedDoc) return true;
    if (this.persist(committed) !== this.persist(this.committedDoc)) return false;
    this.latestDoc = this.latestDoc === this.committedDoc ? committed : edit(this.latestDoc);
    this.committedDoc = committed;
    this.liveDuringFlush?.push(edit);
    this.onCommit(committed);
    return true;
  }

  /** Resolves once nothing is waiting for the disk. */
  async idle(): Promise<void> {
    if (this.flushing) await this.change(this.latestDoc).catch(() => undefined);
  }

  /** Replaces the document outright (a reload from disk), bypassing the queue's disk write. */
  reset(doc: T): void {
    this.committedDoc = doc;
    this.latestDoc = doc;
    this.onDisk = this.persist(doc);
    this.onCommit(doc);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      let doc = this.latestDoc;
      const stagedBefore = this.staged;
      this.liveDuringFlush = [];
      try {
        const text = this.persist(doc);
        if (text !== undefined && text !== this.onDisk) {
          await this.write(text);
          this.onDisk = text;
        }
      } catch (error) {
        this.liveDuringFlush = undefined;
        // Everything staged since was built on this change: it fails with it.
        const failed = batch.concat(this.queue);
        this.queue = [];
        this.latestDoc = this.committedDoc;
        await this.restore();
        for (const w of failed) w.reject(error);
        continue;
      }
      // Live edits made during the write apply to what it committed (they are not in its text).
      for (const edit of this.liveDuringFlush) doc = edit(doc);
      this.liveDuringFlush = undefined;
      if (this.staged === stagedBefore) this.latestDoc = doc;
      if (doc !== this.committedDoc) {
        this.committedDoc = doc;
        this.onCommit(doc);
      }
      for (const w of batch) w.resolve();
    }
    this.flushing = false;
  }

  /**
   * After a failed write the file may already hold the refused text (the rename went through, the
   * folder flush failed): write the committed document back. If that fails too, what is on disk is
   * unknown, so the next change writes the file even when its text equals the committed one.
   */
  private async restore(): Promise<void> {
    this.onDisk = undefined;
    try {
      const text = this.persist(this.committedDoc);
      if (text === undefined) return;
      await this.write(text);
      this.onDisk = text;
    } catch {
      // Still failing; the refused changes are answered 503 either way.
    }
  }
}
