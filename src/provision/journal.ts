/**
 * The journal: one line per key change, on disk (fsync'd) before the change is sent, so that after
 * a crash at any instant the next run knows both keys a pair may have: the old one and the new one.
 */

import { constants } from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, dirname } from "node:path";
import { isValidKey } from "../state/schema.ts";
import { NODE_FS, syncFolder, writeFileDurably } from "../state/store.ts";
import { checkOwnFile, openOwnFile, UnsafeFileError } from "./files.ts";
import type { Pair } from "./keys.ts";

/** A key change about to be sent: pair `endpoint` of `host` goes from old to new. */
export interface Intent {
  readonly host: string;
  readonly endpoint: string;
  readonly oldRd: string;
  readonly oldWr: string;
  readonly newRd: string;
  readonly newWr: string;
}

/** A journal the tool cannot read safely; it will not guess. */
export class JournalError extends Error {
  override name = "JournalError";
}

/** The old pair of an intent. */
export const oldPair = (i: Intent): Pair => ({ rd: i.oldRd, wr: i.oldWr });
/** The new pair of an intent. */
export const newPair = (i: Intent): Pair => ({ rd: i.newRd, wr: i.newWr });

function journalLine(i: Intent): string {
  return JSON.stringify({ host: i.host, endpoint: i.endpoint, oldRd: i.oldRd, oldWr: i.oldWr, newRd: i.newRd, newWr: i.newWr }) + "\n";
}

function isIntent(v: unknown): v is Intent {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o["host"] === "string" &&
    typeof o["endpoint"] === "string" &&
    isValidKey(o["oldRd"]) &&
    isValidKey(o["oldWr"]) &&
    isValidKey(o["newRd"]) &&
    isValidKey(o["newWr"])
  );
}

/** What a journal file holds: its complete lines, and how many bytes they take. */
export interface JournalContents {
  readonly intents: Intent[];
  /** Bytes up to the last complete line; anything after is a line torn by a crash. */
  readonly validBytes: number;
  /** The file that was read (device and inode), or undefined when there was none. */
  readonly file?: { readonly dev: number; readonly ino: number } | undefined;
}

/**
 * Which file appends go to: the one that was read ({dev, ino}), a new one created exclusively
 * ("absent"), or whatever file of ours is at the name after a rewrite ("own").
 */
type JournalFile = { readonly dev: number; readonly ino: number } | "absent" | "own";

/**
 * Reads a journal. A last line without its newline was being written when the run died: its change
 * was never sent (the line is flushed before the request), so it is ignored. Any other bad line is
 * an error.
 */
export async function readJournal(path: string): Promise<JournalContents> {
  // A journal that is a symlink, has other names, or belongs to or is writable by someone else is
  // refused (files.ts checkOwnFile): the run would append every old and new key to it.
  const opened = await openOwnFile(path, "journal");
  if (opened === undefined) return { intents: [], validBytes: 0 };
  let text: string;
  try {
    text = await opened.handle.readFile("utf8");
  } finally {
    await opened.handle.close();
  }
  const file = { dev: opened.stat.dev, ino: opened.stat.ino };
  const end = text.lastIndexOf("\n") + 1;
  const intents: Intent[] = [];
  text
    .slice(0, end)
    .split("\n")
    .forEach((line, i) => {
      if (line === "") return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        value = undefined;
      }
      if (!isIntent(value)) throw new JournalError(`${path}: line ${i + 1} is not a journal entry; refusing to guess which keys the devices have`);
      intents.push(value);
    });
  return { intents, validBytes: Buffer.byteLength(text.slice(0, end)), file };
}

/** The journal open for appending. Appends are serialized; each is on disk when it resolves. */
export class Journal {
  private handle: fsp.FileHandle | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private validBytes: number;
  private readonly lines: Intent[];
  private file: JournalFile;

  constructor(
    readonly path: string,
    contents: JournalContents,
  ) {
    this.validBytes = contents.validBytes;
    this.lines = [...contents.intents];
    this.file = contents.file ?? "absent";
  }

  /** Every line: those read at the start and those appended since. */
  get intents(): readonly Intent[] {
    return this.lines;
  }

  /** Appends one line and flushes it to the disk. */
  append(intent: Intent): Promise<void> {
    const line = JSON.stringify({
      host: intent.host,
      endpoint: intent.endpoint,
      oldRd: intent.oldRd,
      oldWr: intent.oldWr,
      newRd: intent.newRd,
      newWr: intent.newWr,
    });
    return this.serialized(async () => {
      const handle = this.handle ?? (await this.openForAppend());
      await handle.write(line + "\n");
      await handle.sync();
    });
  }

  /** Replaces the journal with the intents still unresolved, or removes it when there are none. */
  rewrite(intents: readonly Intent[]): Promise<void> {
    return this.serialized(async () => {
      await this.handle?.close();
      this.handle = undefined;
      if (intents.length === 0) {
        try {
          await fsp.unlink(this.path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
          throw error;
        }
        await syncFolder(NODE_FS, dirname(this.path));
        this.validBytes = 0;
        this.lines.length = 0;
        this.file = "absent";
        return;
      }
      const text = intents.map(journalLine).join("");
      await writeFileDurably(NODE_FS, dirname(this.path), basename(this.path), text);
      this.file = "own";
      this.validBytes = Buffer.byteLength(text);
      this.lines.splice(0, this.lines.length, ...intents);
    });
  }

  /** Closes the file. */
  close(): Promise<void> {
    return this.serialized(async () => {
      await this.handle?.close();
      this.handle = undefined;
    });
  }

  /**
   * Opens the journal for appending: a new one is created exclusively (it must not exist: a file
   * that appeared since it was read is someone else's), an existing one only if it is still the
   * file that was read, never through a symlink, and still ours alone.
   */
  private async openForAppend(): Promise<fsp.FileHandle> {
    const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW;
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.path, this.file === "absent" ? flags | constants.O_CREAT | constants.O_EXCL : flags, 0o600);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST" || code === "ELOOP" || code === "ENOENT") {
        throw new UnsafeFileError(`the journal ${this.path} was created, replaced or removed by someone else during the run; stopping before any key goes into it (check the folder, then run again)`);
      }
      throw error;
    }
    try {
      const st = await handle.stat();
      checkOwnFile(this.path, st, "journal");
      if (typeof this.file === "object" && (st.dev !== this.file.dev || st.ino !== this.file.ino)) {
        throw new UnsafeFileError(`the journal ${this.path} was replaced by another file during the run; stopping before any key goes into it (check the folder, then run again)`);
      }
      this.file = { dev: st.dev, ino: st.ino };
      await handle.chmod(0o600);
      // Cut a line torn by a crash, so that the next line does not run into it.
      if ((await handle.stat()).size > this.validBytes) await handle.truncate(this.validBytes);
      await handle.sync();
      await syncFolder(NODE_FS, dirname(this.path));
    } catch (error) {
      await handle.close();
      throw error;
    }
    this.handle = handle;
    return handle;
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
